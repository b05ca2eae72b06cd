import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { Quotas } from '../services/quotas.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';

const limit = z.number().int().positive().nullable().optional();
const overrideSchema = z.strictObject({ requestsPerMinute: limit, tokensPerDay: limit });

/**
 * A key's model-gateway quotas (docs/runtime-services.md): `GET /cove/v1/quotas/<key id>` the
 * limits in force and its override, `PUT` an override (`{requestsPerMinute?, tokensPerDay?}`,
 * a field left out keeps the configured limit, `null` lifts it), `DELETE` back to the
 * configured ones. Any key may set any key's, as any key may read any key's usage: Cove's keys
 * are all administrators.
 */
export function quotaRoutes(quotas: Quotas, keyExists: (id: string) => boolean): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const keyId = (id: string) => {
    if (!keyExists(id)) throw new CoveError('not_found', `API key ${id} not found`);
    return id;
  };
  const reply = (id: string) => ({ keyId: id, ...quotas.forKey(id), override: quotas.override(id) ?? null });
  app.get('/cove/v1/quotas/:keyId', (c) => c.json(reply(keyId(c.req.param('keyId')))));
  app.put('/cove/v1/quotas/:keyId', async (c) => {
    const id = keyId(c.req.param('keyId'));
    const o = await body(c, overrideSchema);
    quotas.setOverride(id, {
      ...(o.requestsPerMinute !== undefined && { requestsPerMinute: o.requestsPerMinute }),
      ...(o.tokensPerDay !== undefined && { tokensPerDay: o.tokensPerDay }),
    });
    return c.json(reply(id));
  });
  app.delete('/cove/v1/quotas/:keyId', (c) => {
    quotas.clearOverride(keyId(c.req.param('keyId')));
    return c.body(null, 204);
  });
  return app;
}
