import { Hono } from 'hono';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import { errorHandler } from './errors.ts';
import { execRoutes } from './exec.ts';
import { sandboxRoutes } from './sandboxes.ts';

/** The control API: E2B's REST resources plus Cove's own routes under /cove/v1. */
export function createApi(manager: Manager, log: Logger): Hono {
  const app = new Hono();
  app.onError(errorHandler(log));
  app.notFound((c) => c.json({ code: 404, message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.get('/health', (c) => c.json({ status: 'ok' }));
  app.route('/', sandboxRoutes(manager));
  app.route('/', execRoutes(manager));
  return app;
}
