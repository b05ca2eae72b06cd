import { Hono } from 'hono';
import { z } from 'zod';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';

const timeoutSchema = z.looseObject({ timeout: z.number().int() });
const refreshSchema = z.looseObject({ duration: z.number().int().min(0).max(3600).optional() });

/** Upstream's floor and default for a refresh (infra SandboxTimeoutDefault). */
const MIN_REFRESH_SECONDS = 15;

/** A sandbox's end time (spec 2.8): set it (may shorten), or refresh it (only extends). */
export function timeoutRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { manager, sandboxLog } = deps;
  const app = new Hono<ApiEnv>();

  app.post('/sandboxes/:id/timeout', async (c) => {
    const id = sandboxId(c);
    const { timeout } = await body(c, timeoutSchema);
    const info = manager.setTimeout(id, timeout * 1000);
    sandboxLog.append(id, 'info', 'timeout set', {
      timeout: `${timeout}s`,
      endAt: info.endAt.toISOString(),
      apiKey: c.get('keyId'),
    });
    return c.body(null, 204);
  });

  app.post('/sandboxes/:id/refreshes', async (c) => {
    const id = sandboxId(c);
    const { duration = MIN_REFRESH_SECONDS } = await body(c, refreshSchema);
    manager.extendTimeout(id, Math.max(MIN_REFRESH_SECONDS, duration) * 1000);
    return c.body(null, 204);
  });

  return app;
}
