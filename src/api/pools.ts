import { Hono } from 'hono';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';

/** `GET /cove/v1/pools`: warm sandboxes ready and wanted per template (the console shows them). */
export function poolRoutes(deps: Pick<ApiDeps, 'manager'>): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/cove/v1/pools', (c) => c.json(deps.manager.pool.stats()));
  return app;
}
