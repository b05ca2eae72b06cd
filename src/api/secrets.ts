import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { SecretInfo, SecretStore } from '../secrets/store.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';

const MAX_PAGE = 100;
const value = z
  .string()
  .min(1)
  .max(64 * 1024);
const metadata = z.record(z.string().max(256), z.string().max(4096)).nullish();
const createSchema = z.looseObject({ name: z.string(), value, metadata });
const updateSchema = z.looseObject({ value, metadata });

/** What the routes need of a store: the host's (SecretStore) or the cluster's (src/cluster/secrets.ts). */
export type SecretBackend = Pick<SecretStore, 'create' | 'update' | 'delete'> & {
  list(owner: string): SecretInfo[] | Promise<SecretInfo[]>;
  get(owner: string, idOrName: string): SecretInfo | Promise<SecretInfo>;
};

/**
 * Secrets (spec 2.16) of the calling key: create, list (pages with `X-Next-Token`, the last
 * id of the previous page), get, update (a new version), delete; `{id}` is an id or a name.
 * No reply carries a value.
 */
export function secretRoutes(store: SecretBackend): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.post('/secrets', async (c) => {
    const req = await body(c, createSchema);
    return c.json(await store.create(c.get('keyId'), req.name, req.value, req.metadata ?? {}), 201);
  });
  app.get('/secrets', async (c) => {
    const limitText = c.req.query('limit');
    const limit = limitText === undefined ? MAX_PAGE : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1)
      throw new CoveError('invalid_argument', 'limit: a number from 1');
    const all = await store.list(c.get('keyId'));
    const after = c.req.query('nextToken');
    let start = 0;
    if (after) {
      start = all.findIndex((s) => s.secretID === after) + 1;
      if (start === 0) throw new CoveError('invalid_argument', 'Invalid next token');
    }
    const page = all.slice(start, start + Math.min(limit, MAX_PAGE));
    const last = page.at(-1);
    if (last && start + page.length < all.length) c.header('X-Next-Token', last.secretID);
    return c.json(page);
  });
  app.get('/secrets/:id', async (c) => c.json(await store.get(c.get('keyId'), c.req.param('id'))));
  app.post('/secrets/:id', async (c) => {
    const req = await body(c, updateSchema);
    return c.json(
      await store.update(c.get('keyId'), c.req.param('id'), req.value, req.metadata ?? undefined),
    );
  });
  app.delete('/secrets/:id', async (c) => {
    await store.delete(c.get('keyId'), c.req.param('id'));
    return c.body(null, 204);
  });
  return app;
}
