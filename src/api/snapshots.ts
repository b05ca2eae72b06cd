import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';

const createSchema = z.looseObject({ name: z.string().max(128).nullish() });

const MAX_PAGE = 100;

/** `SnapshotInfo` (spec 2.14). */
const snapshotInfo = (s: { id: string; name?: string }) => ({
  snapshotID: s.id,
  names: s.name === undefined ? [] : [s.name],
});

/**
 * Snapshots (spec 2.14): create from a sandbox, list (filtered by sandbox and name, pages of
 * at most 100 with `X-Next-Token`), delete through E2B's template route. A snapshot id or
 * name is a template for create (manager.create).
 */
export function snapshotRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { manager, sandboxLog } = deps;
  const app = new Hono<ApiEnv>();

  app.post('/sandboxes/:id/snapshots', async (c) => {
    const id = sandboxId(c);
    const { name } = await body(c, createSchema);
    const snapshot = await manager.createSnapshot(id, name ? { name } : {});
    sandboxLog.append(id, 'info', 'snapshot created', { snapshot: snapshot.id, apiKey: c.get('keyId') });
    return c.json(snapshotInfo(snapshot), 201);
  });

  app.get('/snapshots', (c) => {
    const limitText = c.req.query('limit');
    const limit = limitText === undefined ? MAX_PAGE : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1)
      throw new CoveError('invalid_argument', 'limit: a number from 1');
    const all = manager.listSnapshots({
      ...(c.req.query('sandboxID') && { sandboxId: c.req.query('sandboxID') }),
      ...(c.req.query('name') && { name: c.req.query('name') }),
    });
    // The token is the last id of the previous page: snapshots are listed oldest first.
    const after = c.req.query('nextToken');
    let start = 0;
    if (after) {
      start = all.findIndex((s) => s.id === after) + 1;
      if (start === 0) throw new CoveError('invalid_argument', 'Invalid next token');
    }
    const page = all.slice(start, start + Math.min(limit, MAX_PAGE));
    const last = page.at(-1);
    if (last && start + page.length < all.length) c.header('X-Next-Token', last.id);
    return c.json(page.map(snapshotInfo));
  });

  // E2B deletes snapshots through the templates resource: what is no snapshot goes on to the
  // template routes (whose 404 makes the SDK's deleteSnapshot return false).
  app.delete('/templates/:id', async (c, next) => {
    const id = c.req.param('id');
    if (!manager.hasSnapshot(id)) return next();
    await manager.deleteSnapshot(id);
    return c.body(null, 204);
  });

  return app;
}
