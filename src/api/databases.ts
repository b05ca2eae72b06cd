import { Readable } from 'node:stream';
import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { DatabaseRecord, Databases } from '../services/databases/databases.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';

const createSchema = z.looseObject({ name: z.string(), maxSizeMB: z.number().optional() });

/** What a key holder sees of its database: the URL is the one its sandboxes get (from the bridge network). */
const reply = (dbs: Databases, d: DatabaseRecord, withUrl: boolean) => ({
  databaseID: d.id,
  name: d.name,
  createdAt: d.createdAt,
  maxSizeMB: d.maxBytes / 2 ** 20,
  frozen: d.frozen,
  locked: d.locked,
  ...(withUrl && { url: dbs.url(d) }),
});

/**
 * Agents' PostgreSQL databases of the calling key (docs/runtime-services.md, Databases):
 * `POST /databases {name}`, `GET /databases`, `GET /databases/{id or name}` (with its URL),
 * `PATCH /databases/{id or name} {maxSizeMB}`, `DELETE /databases/{id or name}`, `GET /databases/{id or name}/backup[?format=custom]` (pg_dump),
 * `POST /databases/{id or name}/restore` (a custom-format archive, pg_restore as the database's role).
 * Another key's database is not found.
 */
export function databaseRoutes(dbs: Databases): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.post('/databases', async (c) => {
    const { name, maxSizeMB } = await body(c, createSchema);
    return c.json(reply(dbs, await dbs.create(c.get('keyId'), name, maxSizeMB), true), 201);
  });
  app.get('/databases', (c) => c.json(dbs.list(c.get('keyId')).map((d) => reply(dbs, d, false))));
  app.get('/databases/:ref', async (c) => {
    const d = dbs.get(c.get('keyId'), c.req.param('ref'));
    return c.json({ ...reply(dbs, d, true), sizeBytes: (await dbs.size(d)) ?? null });
  });
  app.patch('/databases/:ref', async (c) => {
    const { maxSizeMB } = await body(c, z.looseObject({ maxSizeMB: z.number() }));
    return c.json(reply(dbs, await dbs.setLimit(c.get('keyId'), c.req.param('ref'), maxSizeMB), true));
  });
  app.delete('/databases/:ref', async (c) => {
    await dbs.delete(c.get('keyId'), c.req.param('ref'));
    return c.body(null, 204);
  });
  app.get('/databases/:ref/backup', async (c) => {
    const d = dbs.get(c.get('keyId'), c.req.param('ref'));
    const format = c.req.query('format') ?? 'plain';
    if (format !== 'plain' && format !== 'custom')
      throw new CoveError('invalid_argument', 'format: plain (SQL) or custom (for restore)');
    const dump = await dbs.backup(c.get('keyId'), d.id, format);
    return new Response(Readable.toWeb(dump) as ReadableStream, {
      headers: {
        'content-type': format === 'plain' ? 'application/sql; charset=utf-8' : 'application/octet-stream',
        'content-disposition': `attachment; filename="${d.name}.${format === 'plain' ? 'sql' : 'dump'}"`,
      },
    });
  });
  app.post('/databases/:ref/restore', async (c) => {
    const stream = c.req.raw.body;
    if (!stream) throw new CoveError('invalid_argument', 'the body is the archive to restore');
    await dbs.restore(c.get('keyId'), c.req.param('ref'), Readable.fromWeb(stream as never));
    return c.body(null, 204);
  });
  return app;
}
