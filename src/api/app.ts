import { Hono } from 'hono';
import type { Audit } from '../audit/index.ts';
import type { SandboxLog } from '../audit/sandbox-log.ts';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import type { Prometheus } from '../metrics/prometheus.ts';
import type { Sampler } from '../metrics/sampler.ts';
import { auditRoutes, observeApiCalls } from './audit.ts';
import { requireApiKey, type ApiEnv, type VerifyKey } from './auth.ts';
import { errorHandler } from './errors.ts';
import { execRoutes } from './exec.ts';
import { forkRoutes } from './fork.ts';
import { pauseRoutes } from './pause.ts';
import { snapshotRoutes } from './snapshots.ts';
import { listRoutes } from './list.ts';
import { logRoutes } from './logs.ts';
import { metricsRoutes } from './metrics.ts';
import { networkRoutes } from './network.ts';
import { sandboxRoutes } from './sandboxes.ts';
import { templateRoutes, templateUploadRoutes } from './templates.ts';
import type { TemplateBuilder } from '../templates/build/index.ts';
import { timeoutRoutes } from './timeout.ts';
import { unsupportedRoutes } from './unsupported.ts';
import { secretRoutes } from './secrets.ts';
import type { SecretStore } from '../secrets/store.ts';
import { volumeContentRoutes, volumeRoutes, type VolumeDeps } from './volumes.ts';
import { consoleRoutes } from '../console/serve.ts';
import { poolRoutes } from './pools.ts';
import { hostRoutes } from './host.ts';
import { buildRoutes } from './builds.ts';
import { eventRoutes } from './events.ts';
import type { InSandboxMcp } from '../mcp/in-sandbox.ts';
import { identityRoutes } from './identity.ts';
import type { IdentityIssuer } from '../identity/issuer.ts';

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
  /** Template builds through the API (spec 2.15); without it those routes say "not supported". */
  templateBuilder?: TemplateBuilder;
  /** The audit trail (API calls are recorded, `/cove/v1/audit` reads it); none: not kept. */
  audit?: Audit;
  /** `/metrics` in Prometheus' format; none: 404. */
  prometheus?: Prometheus;
  /** Volumes (spec 2.16); without them those routes say "not supported". */
  volumes?: VolumeDeps;
  /** Secrets (spec 2.16); without them those routes say "not supported". */
  secrets?: SecretStore;
  /** The web console's built assets (src/console); default dist/console in the checkout. */
  consoleDir?: string;
  /** E2B's `mcp` option: names checked and github/ servers copied in at create (src/mcp/in-sandbox.ts). */
  inSandboxMcp?: InSandboxMcp;
  /** Workload identity (`iam`): its JWKS and discovery document are served without a key. */
  identity?: IdentityIssuer;
}

/** The control API: E2B's REST resources plus Cove's own routes under /cove/v1. */
export function createApi(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.onError(errorHandler(deps.log));
  app.notFound((c) => c.json({ code: 404, message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.use('*', observeApiCalls(deps)); // first: refused keys are counted and recorded too
  // The one route without a key (a load balancer's probe): registered before the key check.
  app.get('/health', (c) => c.json({ status: 'ok' }));
  // The SDK PUTs COPY archives to the signed URL without a key: the signature is checked instead.
  if (deps.templateBuilder) app.route('/', templateUploadRoutes(deps.templateBuilder));
  // The volume-content API takes the volume's token instead of a key.
  if (deps.volumes) app.route('/', volumeContentRoutes(deps.volumes));
  // The console's page and scripts: the page asks for a key and sends it with each API call.
  app.route('/', consoleRoutes(deps.consoleDir));
  if (deps.identity) app.route('/', identityRoutes(deps.identity));
  app.use('*', requireApiKey(deps.verifyKey));
  if (deps.volumes) app.route('/', volumeRoutes(deps.volumes));
  if (deps.secrets) app.route('/', secretRoutes(deps.secrets));
  app.route('/', snapshotRoutes(deps)); // first: a snapshot is deleted as a template (spec 2.14)
  if (deps.templateBuilder) app.route('/', templateRoutes(deps.templateBuilder));
  app.route('/', metricsRoutes(deps)); // first: /sandboxes/metrics is no sandbox id
  app.route('/', listRoutes(deps));
  app.route('/', sandboxRoutes(deps));
  app.route('/', timeoutRoutes(deps));
  app.route('/', logRoutes(deps));
  app.route('/', networkRoutes(deps));
  app.route('/', pauseRoutes(deps));
  app.route('/', forkRoutes(deps));
  app.route('/', unsupportedRoutes(deps));
  app.route('/', execRoutes(deps.manager));
  app.route('/', auditRoutes(deps));
  app.route('/', poolRoutes(deps));
  if (deps.prometheus) app.route('/', hostRoutes(deps.prometheus));
  if (deps.templateBuilder) app.route('/', buildRoutes(deps.templateBuilder));
  app.route('/', eventRoutes(deps.manager));
  return app;
}
