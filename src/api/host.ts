import { Hono } from 'hono';
import type { Prometheus } from '../metrics/prometheus.ts';
import type { ApiEnv } from './auth.ts';

/** `GET /cove/v1/host`: the host's headroom, sandboxes per backend and pools (the console's
 * health page); the same figures as /metrics, as JSON. */
export function hostRoutes(prometheus: Pick<Prometheus, 'host'>): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/cove/v1/host', async (c) => c.json(await prometheus.host()));
  return app;
}
