import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';
import { sandboxReply } from './wire.ts';

const pauseSchema = z.looseObject({ memory: z.boolean().nullish() });
const resumeSchema = z.looseObject({
  timeout: z.number().int().optional(),
  memory: z.boolean().nullish(),
});

/** Seconds a legacy resume keeps the sandbox when the body names none (upstream's default). */
const RESUME_DEFAULT_TIMEOUT = 15;

/**
 * Pause (spec 2.9): 204, or 409 when already paused (the SDK's pause() then returns false).
 * Resume is connect (sandboxes.ts); the legacy `POST /sandboxes/{id}/resume` that no current
 * SDK calls answers 201, or 409 for a running sandbox, as upstream.
 */
export function pauseRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { manager, sandboxLog } = deps;
  const app = new Hono<ApiEnv>();

  app.post('/sandboxes/:id/pause', async (c) => {
    const id = sandboxId(c);
    const { memory } = await body(c, pauseSchema);
    sandboxLog.append(id, 'info', 'pause requested', {
      memory: String(memory ?? true),
      apiKey: c.get('keyId'),
    });
    const info = await manager.pause(id, { memory: memory ?? true });
    sandboxLog.append(id, 'info', 'sandbox paused', { as: info.paused ?? 'unknown' });
    return c.body(null, 204);
  });

  app.post('/sandboxes/:id/resume', async (c) => {
    const id = sandboxId(c);
    const { timeout = RESUME_DEFAULT_TIMEOUT, memory } = await body(c, resumeSchema);
    if (manager.get(id).state === 'running')
      throw new CoveError('conflict', `sandbox ${id} is already running`);
    const { info } = await manager.resume(id, {
      timeoutMs: timeout * 1000,
      ...(memory === false && { memory }),
    });
    sandboxLog.append(id, 'info', 'sandbox resumed', { apiKey: c.get('keyId') });
    return c.json(sandboxReply(info, deps.domain), 201);
  });

  return app;
}
