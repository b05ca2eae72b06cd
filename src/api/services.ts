import { Hono } from 'hono';
import { CoveError } from '../core/errors.ts';
import { isSandboxId } from '../core/ids.ts';
import type { Usage } from '../services/usage.ts';
import type { ApiEnv } from './auth.ts';

/**
 * Runtime services' usage on Cove's API (the services themselves are mounted beside it, see
 * src/services): `GET /cove/v1/usage` for the calling key, `?keyId=` for another key, or
 * `?sandboxId=` for one sandbox (its ledger outlives it). Any key may read any: Cove's keys
 * are all administrators, as they may kill any sandbox. `?since=` (epoch ms) narrows it.
 */
export function serviceUsageRoutes(usage: Usage): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/cove/v1/usage', (c) => {
    const { sandboxId, keyId, since } = c.req.query();
    const from = since === undefined ? 0 : Number(since);
    if (!Number.isFinite(from)) throw new CoveError('invalid_argument', 'since: epoch milliseconds');
    if (sandboxId !== undefined) {
      if (!isSandboxId(sandboxId))
        throw new CoveError('invalid_argument', `sandboxId ${sandboxId}: not a sandbox id`);
      return c.json({ sandboxId, ...usage.summary('sandbox', sandboxId, from) });
    }
    const key = keyId ?? c.get('keyId');
    return c.json({ keyId: key, ...usage.summary('key', key, from) });
  });
  return app;
}
