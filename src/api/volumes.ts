import { Readable } from 'node:stream';
import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import { VolumeContent, type Owner } from '../volumes/content.ts';
import type { VolumeRecord, VolumeStore } from '../volumes/store.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';

/** What the volume routes need: the store and the per-volume size limit in bytes. */
export interface VolumeDeps {
  store: VolumeStore;
  sizeLimitBytes: number;
  /** COVE_DOMAIN, or null: `VolumeAndToken.domain` then leaves the SDK to its own. */
  domain: string | null;
}

const createSchema = z.looseObject({ name: z.string() });
const id32 = z.coerce.number().int().min(0).max(65_535);
const metaSchema = z.looseObject({
  uid: id32.nullish(),
  gid: id32.nullish(),
  mode: z.coerce.number().int().min(0).max(0o7777).nullish(),
});

const volumeAndToken = (v: VolumeRecord, domain: string | null) => ({
  volumeID: v.id,
  name: v.name,
  token: v.token,
  ...(domain && { domain }),
});

/** `POST/GET /volumes`, `GET/DELETE /volumes/{id}` (spec 2.16), behind the API key. */
export function volumeRoutes(deps: VolumeDeps): Hono<ApiEnv> {
  const { store } = deps;
  const app = new Hono<ApiEnv>();
  app.post('/volumes', async (c) => {
    const { name } = await body(c, createSchema);
    return c.json(volumeAndToken(await store.create(c.get('keyId'), name), deps.domain), 201);
  });
  app.get('/volumes', (c) =>
    c.json(store.list(c.get('keyId')).map((v) => ({ volumeID: v.id, name: v.name }))),
  );
  app.get('/volumes/:id', (c) =>
    c.json(volumeAndToken(store.get(c.get('keyId'), c.req.param('id')), deps.domain)),
  );
  app.delete('/volumes/:id', async (c) => {
    await store.delete(c.get('keyId'), c.req.param('id'));
    return c.body(null, 204);
  });
  return app;
}

/** Query numbers (uid, gid, mode) and `force`, as the SDK sends them. */
function ownerQuery(q: (name: string) => string | undefined): Owner & { force: boolean } {
  const parsed = metaSchema.safeParse({ uid: q('uid'), gid: q('gid'), mode: q('mode') });
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CoveError('invalid_argument', `${issue?.path.join('.')}: ${issue?.message}`);
  }
  const { uid, gid, mode } = parsed.data;
  return {
    ...(uid != null && { uid }),
    ...(gid != null && { gid }),
    ...(mode != null && { mode }),
    force: q('force') === 'true',
  };
}

/**
 * The volume-content API (`/volumecontent/{id}/...`, spec 2.16) with the volume's own token
 * (`Authorization: Bearer`), not an API key: registered before the key check. The SDK
 * calls it at E2B_VOLUME_API_URL, which is Cove's own URL.
 */
export function volumeContentRoutes(deps: VolumeDeps): Hono {
  const app = new Hono();
  const content = (id: string, authorization: string | undefined): VolumeContent => {
    const token = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    const volume = deps.store.byToken(id, token);
    return new VolumeContent(deps.store.dataDir(volume.id), volume.sizeLimitBytes ?? deps.sizeLimitBytes);
  };
  const path = (q: string | undefined): string => {
    if (q === undefined) throw new CoveError('invalid_argument', 'path: the query parameter is required');
    return q;
  };

  app.get('/volumecontent/:id/dir', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    const depth = c.req.query('depth');
    return c.json(await vol.list(path(c.req.query('path')), depth === undefined ? 1 : Number(depth)));
  });
  app.post('/volumecontent/:id/dir', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    return c.json(
      await vol.makeDir(
        path(c.req.query('path')),
        ownerQuery((n) => c.req.query(n)),
      ),
      201,
    );
  });
  app.get('/volumecontent/:id/path', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    return c.json(await vol.stat(path(c.req.query('path'))));
  });
  app.patch('/volumecontent/:id/path', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    const parsed = await body(c, metaSchema);
    const meta: Owner = {
      ...(parsed.uid != null && { uid: parsed.uid }),
      ...(parsed.gid != null && { gid: parsed.gid }),
      ...(parsed.mode != null && { mode: parsed.mode }),
    };
    return c.json(await vol.updateMetadata(path(c.req.query('path')), meta));
  });
  app.delete('/volumecontent/:id/path', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    await vol.remove(path(c.req.query('path')));
    return c.body(null, 204);
  });
  app.get('/volumecontent/:id/file', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    const { stream, size } = await vol.readFile(path(c.req.query('path')));
    c.header('Content-Type', 'application/octet-stream');
    c.header('Content-Length', String(size));
    return c.body(Readable.toWeb(stream as Readable) as ReadableStream);
  });
  app.put('/volumecontent/:id/file', async (c) => {
    const vol = content(c.req.param('id'), c.req.header('authorization'));
    const opts = ownerQuery((n) => c.req.query(n));
    const stream = c.req.raw.body as AsyncIterable<Uint8Array> | null;
    return c.json(await vol.writeFile(path(c.req.query('path')), stream, opts), 201);
  });
  return app;
}
