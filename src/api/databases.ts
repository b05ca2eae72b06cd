import { Readable } from 'node:stream';
import { Hono } from 'hono';
import { z } from 'zod';
import type { DatabaseRecord, Databases } from '../services/databases/databases.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';

const createSchema = z.looseObject({ name: z.string() });

/** What a key holder sees of its database: the URL is the one its sandboxes get (from the bridge network). */
const reply = (dbs: Databases, d: DatabaseRecord, withUrl: boolean) => ({
  databaseID: d.id,
  name: d.name,
  createdAt: d.createdAt,
  ...(withUrl && { url: dbs.url(d) }),
});

/**
 * Agents' PostgreSQL databases of the calling key (docs/runtime-services.md, Databases):
 * `POST /databases {name}`, `GET /databases`, `GET /databases/{id or name}` (with its URL),
 * `DELETE /databases/{id or name}`, `GET /databases/{id or name}/backup` (pg_dump, plain SQL).
 * Another key's database is not found.
 */
export function databaseRoutes(dbs: Databases): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.post('/databases', async (c) => {
    const { name } = await body(c, createSchema);
    return c.json(reply(dbs, await dbs.create(c.get('keyId'), name), true), 201);
  });
  app.get('/databases', (c) => c.json(dbs.list(c.get('keyId')).map((d) => reply(dbs, d, false))));
  app.get('/databases/:ref', (c) => c.json(reply(dbs, dbs.get(c.get('keyId'), c.req.param('ref')), true)));
  app.delete('/databases/:ref', async (c) => {
    await dbs.delete(c.get('keyId'), c.req.param('ref'));
    return c.body(null, 204);
  });
  app.get('/databases/:ref/backup', async (c) => {
    const d = dbs.get(c.get('keyId'), c.req.param('ref'));
    const dump = await dbs.backup(c.get('keyId'), d.id);
    return new Response(Readable.toWeb(dump) as ReadableStream, {
      headers: {
        'content-type': 'application/sql; charset=utf-8',
        'content-disposition': `attachment; filename="${d.name}.sql"`,
      },
    });
  });
  return app;
}
