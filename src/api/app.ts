import { Hono } from 'hono';
import type { SandboxLog } from '../audit/sandbox-log.ts';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import type { Sampler } from '../metrics/sampler.ts';
import { requireApiKey, type ApiEnv, type VerifyKey } from './auth.ts';
import { errorHandler } from './errors.ts';
import { execRoutes } from './exec.ts';
import { listRoutes } from './list.ts';
import { logRoutes } from './logs.ts';
import { metricsRoutes } from './metrics.ts';
import { networkRoutes } from './network.ts';
import { sandboxRoutes } from './sandboxes.ts';
import { timeoutRoutes } from './timeout.ts';
import { unsupportedRoutes } from './unsupported.ts';

/** What the routes use; built and wired in src/main.ts. */
export interface ApiDeps {
  manager: Manager;
  log: Logger;
  verifyKey: VerifyKey;
  metrics: Pick<Sampler, 'samples' | 'latest' | 'ensure'>;
  sandboxLog: SandboxLog;
  /** The disk a sandbox may fill, in MiB: Cove sets no quota, so the size of the filesystem. */
  diskSizeMB: () => number;
  /** COVE_DOMAIN, or null: replies then leave the SDK to its own E2B_DOMAIN. */
  domain: string | null;
}

/** The control API: E2B's REST resources plus Cove's own routes under /cove/v1. */
export function createApi(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.onError(errorHandler(deps.log));
  app.notFound((c) => c.json({ code: 404, message: `no route ${c.req.method} ${c.req.path}` }, 404));
  // The one route without a key (a load balancer's probe): registered before the key check.
  app.get('/health', (c) => c.json({ status: 'ok' }));
  app.use('*', requireApiKey(deps.verifyKey));
  app.route('/', metricsRoutes(deps)); // first: /sandboxes/metrics is no sandbox id
  app.route('/', listRoutes(deps));
  app.route('/', sandboxRoutes(deps));
  app.route('/', timeoutRoutes(deps));
  app.route('/', logRoutes(deps));
  app.route('/', networkRoutes(deps));
  app.route('/', unsupportedRoutes(deps));
  app.route('/', execRoutes(deps.manager));
  return app;
}
