import { Hono } from 'hono';
import type { TemplateBuilder } from '../templates/build/index.ts';
import type { ApiEnv } from './auth.ts';

/**
 * `GET /cove/v1/builds?limit=`: the newest template builds (50 by default, 500 at most),
 * newest first, for the console's templates page; a build's log is E2B's build status route
 * (`/templates/<name>/builds/<id>/status?logsOffset=`, templates.ts), which it follows live.
 */
export function buildRoutes(b: Pick<TemplateBuilder, 'builds'>): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/cove/v1/builds', async (c) => {
    const limit = Math.min(500, Math.max(1, Number(c.req.query('limit') ?? 50) || 50));
    const builds = await b.builds.list(limit);
    return c.json(
      builds.map((r) => ({
        buildID: r.buildID,
        templateID: r.name,
        tags: r.tags,
        status: r.status,
        createdAt: r.createdAt,
        ...(r.finishedAt && { finishedAt: r.finishedAt }),
        ...(r.reason && { reason: r.reason.message }),
      })),
    );
  });
  return app;
}
