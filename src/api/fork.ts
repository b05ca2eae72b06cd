import { Hono } from 'hono';
import { z } from 'zod';
import { httpStatus } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';
import { inheritedVolumeMounts } from './volume-mounts.ts';
import { sandboxReply } from './wire.ts';

/** Upstream's SandboxForkRequest bounds: its API refuses a body outside them (400) before it looks the source up. */
const forkSchema = z.looseObject({
  timeout: z.number().int().min(0).optional(),
  count: z.number().int().min(1).max(100).optional(),
});

/** Upstream's defaults when the body leaves them out (2.51 sends only what the caller set). */
const FORK_DEFAULT_TIMEOUT = 15;
const FORK_DEFAULT_COUNT = 1;

/**
 * Fork (spec 2.10): 201 with one `SandboxForkResult` per fork, `{sandbox}` or `{error}`, so one
 * failed fork does not hide the others; an unknown source is a 404 for the whole request.
 */
export function forkRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { manager, sandboxLog } = deps;
  const app = new Hono<ApiEnv>();

  app.post('/sandboxes/:id/fork', async (c) => {
    const { timeout = FORK_DEFAULT_TIMEOUT, count = FORK_DEFAULT_COUNT } = await body(c, forkSchema);
    const id = sandboxId(c);
    const source = manager.get(id); // an unknown source is a 404 (after the body's bounds, as upstream)
    // Forks mount the source's volumes (manager/snapshot.ts forkInput): all still there, or no fork.
    inheritedVolumeMounts(deps.volumes?.store, c.get('keyId'), source.volumeMounts, `sandbox ${id}`);
    const results = await manager.fork(id, { count, timeoutMs: timeout * 1000, owner: c.get('keyId') });
    sandboxLog.append(id, 'info', 'forked', {
      forks: results.map((r) => ('sandbox' in r ? r.sandbox.id : r.error.code)).join(','),
      apiKey: c.get('keyId'),
    });
    return c.json(
      results.map((r) =>
        'sandbox' in r
          ? { sandbox: sandboxReply(r.sandbox, deps.domain) }
          : { error: { code: httpStatus[r.error.code], message: r.error.message } },
      ),
      201,
    );
  });

  return app;
}
