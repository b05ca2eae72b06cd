import { Hono } from 'hono';
import { z } from 'zod';
import type { Keyring } from '../keys/keys.ts';
import type { ApiKeyRecord } from '../store/store.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';

const createSchema = z.strictObject({ name: z.string().max(64).optional() });

/** A key as the API shows it: never its hash (the secret itself is not stored at all). */
const shown = ({ hash: _, ...k }: ApiKeyRecord, caller: string) => ({ ...k, current: k.id === caller });

/** What the routes need of a keyring: the host's (src/keys) or the cluster's (src/cluster/keys.ts). */
type Awaitable<T> = T | Promise<T>;
export interface KeyAdmin {
  list(): Awaitable<ApiKeyRecord[]>;
  create(name: string, createdBy: string): Awaitable<{ key: string; record: ApiKeyRecord }>;
  revoke(id: string): Awaitable<string[]>;
}

/**
 * The API keys of this Cove through the API (the console's keys page; `cove keys` works on the
 * store directly): `GET /cove/v1/keys`, `POST /cove/v1/keys {name}` (the reply holds the new
 * key, the one time it is shown), `DELETE /cove/v1/keys/<id>`. Any key may manage every key, as
 * any key may drive every sandbox: Cove's keys are one team's, all administrators
 * (docs/observability.md). A key made here records its maker, and revoking the maker revokes
 * it too, so a leaked key cannot mint itself a successor that outlives its revocation.
 * Every call but GET is in the audit trail (`api`, under the calling key).
 */
export function keyRoutes(keys: Keyring | KeyAdmin): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/cove/v1/keys', async (c) =>
    c.json({ keys: (await keys.list()).map((k) => shown(k, c.get('keyId'))) }),
  );
  app.post('/cove/v1/keys', async (c) => {
    const { name } = await body(c, createSchema);
    const { key, record } = await keys.create(name ?? 'console', c.get('keyId'));
    c.header('cache-control', 'no-store');
    return c.json({ ...shown(record, c.get('keyId')), key }, 201);
  });
  app.delete('/cove/v1/keys/:id', async (c) => c.json({ revoked: await keys.revoke(c.req.param('id')) }));
  return app;
}
