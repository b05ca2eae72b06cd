import { Hono } from 'hono';
import { CoveError } from '../core/errors.ts';
import { isSandboxId } from '../core/ids.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { sandboxId } from './validate.ts';

function unixSeconds(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new CoveError('invalid_argument', `${name}: expected unix seconds`);
  return n;
}

/** Sampled cpu, memory and disk use (spec 2.12); the samples come from src/metrics. */
export function metricsRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { manager, metrics } = deps;
  const app = new Hono<ApiEnv>();

  // The latest sample of several sandboxes at once; not used by the JS SDK. Registered
  // before /sandboxes/{id} routes, which would otherwise take "metrics" for an id.
  app.get('/sandboxes/metrics', (c) => {
    const ids = (c.req.query('sandbox_ids') ?? '').split(',').filter((id) => id !== '');
    if (ids.length > 100) throw new CoveError('invalid_argument', 'sandbox_ids: at most 100 ids');
    const sandboxes: Record<string, unknown> = {};
    for (const id of ids) {
      const latest = isSandboxId(id) ? metrics.latest(id) : undefined;
      if (latest) sandboxes[id] = latest;
    }
    return c.json({ sandboxes });
  });

  // `start`/`end` are unix seconds, both inclusive; a window before the sandbox existed is
  // an empty array (the SDK's metrics test asks for one).
  app.get('/sandboxes/:id/metrics', async (c) => {
    const id = sandboxId(c);
    manager.get(id);
    const start = unixSeconds(c.req.query('start'), 'start');
    const end = unixSeconds(c.req.query('end'), 'end');
    if (start !== undefined && end !== undefined && start > end)
      throw new CoveError('invalid_argument', 'start must not be after end');
    await metrics.ensure(id);
    return c.json(
      metrics.samples(id, { ...(start !== undefined && { start }), ...(end !== undefined && { end }) }),
    );
  });

  // Prometheus' text format (src/metrics/prometheus.ts); behind the key like every route.
  app.get('/metrics', async (c) => {
    if (!deps.prometheus) throw new CoveError('not_found', 'no metrics registry');
    const { text, contentType } = await deps.prometheus.scrape();
    return c.body(text, 200, { 'content-type': contentType });
  });

  return app;
}
