import { statfsSync } from 'node:fs';
import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { RequestListener } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { connectAgent } from './agent-channel/client.ts';
import { createApi } from './api/app.ts';
import { VolumeStore } from './volumes/store.ts';
import { openCredentials } from './secrets/open.ts';
import { secretInjection, type SecretLookup } from './secrets/injection.ts';
import { EGRESS_CA_ENV } from './manager/trust-store.ts';
import { serviceUsageRoutes } from './api/services.ts';
import { observedAgent } from './audit/agent.ts';
import { createAudit } from './audit/index.ts';
import { openSandboxLog } from './audit/sandbox-log-sqlite.ts';
import { followSandboxes } from './audit/sandbox-events.ts';
import type { Config } from './config/config.ts';
import { createEnvd } from './envd/index.ts';
import { envdServices } from './envd/services.ts';
import { createGateway } from './gateway/gateway.ts';
import { listen, serve } from './gateway/listen.ts';
import { loadTls, SELF_SIGNED_DOMAIN, type TlsMaterial } from './gateway/tls.ts';
import { CoveError } from './core/errors.ts';
import { holdLock } from './core/lock.ts';
import { createLogger, type Logger } from './core/log.ts';
import { currentRequest } from './core/request-context.ts';
import { traced } from './core/trace.ts';
import { createKeyring } from './keys/keys.ts';
import { createManager, type Manager } from './manager/manager.ts';
import { createMcpEndpoint } from './mcp/http.ts';
import { createInSandboxMcp } from './mcp/in-sandbox.ts';
import { createPrometheus } from './metrics/prometheus.ts';
import { createSandboxSampler } from './metrics/sandboxes.ts';
import type { ReconcileReport } from './manager/reconcile.ts';
import { createNetwork } from './network/network.ts';
import { acceleratorWarnings, createDrivers } from './runtime/drivers.ts';
import { createRuntimeSet } from './runtime/set.ts';
import { readSandboxFile } from './services/sandbox-file.ts';
import { createServices } from './services/services.ts';
import { databaseRoutes } from './api/databases.ts';
import { quotaRoutes } from './api/quotas.ts';
import { keyRoutes } from './api/keys.ts';
import { createDatabaseAccess } from './services/databases/access.ts';
import { databasesOf, startDatabases, wireDatabases } from './services/databases/wiring.ts';
import { createSqliteStore } from './store/sqlite.ts';
import { loadSecretsKey } from './secrets/seal.ts';
import { storeSealing } from './secrets/sealed-tokens.ts';
import type { ClusterAdmission } from './cluster/admission.ts';
import { createTemplateStore } from './templates/index.ts';
import { createTemplateBuilder } from './templates/build/index.ts';
import { tuneGc } from './core/gc.ts';

export interface Cove {
  manager: Manager;
  log: Logger;
  reconciled: ReconcileReport;
  /** The address the HTTP server listens on. */
  url: string;
  /** The domain of sandbox hosts, `<port>-<id>.<domain>`, as create replies name it. */
  domain: string;
  /** With HTTPS (config.tls): the certificate's names, and the CA file when Cove made it. */
  tls?: TlsMaterial;
  /**
   * A valid API key, when this start knows one in plain text: the key it minted because the
   * store held none (the first start; `cove serve` prints it), or `opts.apiKey`, which it
   * stored if it was not yet. Undefined otherwise: keys are stored hashed and cannot be
   * shown again (`cove keys create` makes another). Tests: pass `apiKey` (test/helpers.ts
   * does) or read this after starting on a fresh home.
   */
  apiKey?: string;
  /** Stops serving. Sandboxes keep running; the next start adopts them. */
  close(): Promise<void>;
  /** What `cove serve` says beside its URL (software emulation under the microvm default). */
  warnings?: string[];
}

/**
 * The domain create and connect replies name, from which the SDK builds `sbx.getHost(port)` =
 * `<port>-<id>.<domain>` (spec 1.2). COVE_DOMAIN when set; else `localhost:<port>`, which curl
 * and browsers resolve to the loopback (RFC 6761), so that getHost() URLs work on this machine.
 * A domain in the reply wins over the client's E2B_DOMAIN, so it is set on the server.
 */
export function sandboxDomain(config: Pick<Config, 'domain' | 'tls'>, port: number): string {
  // A certificate cannot name `*.localhost` (no wildcard right under a top-level name), so a
  // self-signed one is made for `*.cove.localhost`, which curl and browsers resolve too.
  const selfSigned = config.tls !== undefined && 'selfSigned' in config.tls;
  return config.domain ?? `${selfSigned ? SELF_SIGNED_DOMAIN : 'localhost'}:${port}`;
}

interface StartOptions {
  log?: Logger;
  ensureTemplates?: string[];
  apiKey?: string;
  /** `cove node` (src/cluster): every request must come from an API replica, which names the caller's key. */
  cluster?: ClusterAdmission;
  /** `cove node`: secret values come from the cluster's API replicas, not this host's store. */
  secrets?: SecretLookup;
}

/** The one place where Cove's components are built from config and wired together. */
export async function startCove(config: Config, opts: StartOptions = {}): Promise<Cove> {
  const log = opts.log ?? createLogger(config.logLevel);
  tuneGc();
  // First: a missing or mismatched certificate is a clear error before anything starts.
  const tls =
    config.tls && (await loadTls(config.tls, join(config.home, 'tls'), config.domain ?? SELF_SIGNED_DOMAIN));
  // One Cove per instance: a second one's reconcile would take the first one's sandboxes
  // for orphans and remove them. The lock is the kernel's, so a crash never leaves it stale.
  await mkdir(`/run/${config.instance}`, { recursive: true, mode: 0o700 });
  const instanceLock = await holdLock(`/run/${config.instance}/serve.lock`, { timeoutMs: 0 }).catch(
    (err: unknown) => {
      const message = `another Cove already serves instance '${config.instance}' on this host`;
      throw new CoveError('conflict', message, { cause: err });
    },
  );
  try {
    return await startLocked(config, opts, log, instanceLock, tls);
  } catch (err) {
    await instanceLock.release();
    throw err;
  }
}

async function startLocked(
  config: Config,
  opts: StartOptions,
  log: Logger,
  instanceLock: { release(): Promise<void> },
  tls: TlsMaterial | undefined,
): Promise<Cove> {
  await mkdir(join(config.home, 'sandboxes'), { recursive: true, mode: 0o711 });
  // The runtime opens each sandbox's rootfs as the sandbox's mapped root, a host uid with no
  // rights of its own: every directory above it must be searchable (o+x) by anyone.
  const { mode } = await stat(config.home);
  if ((mode & 0o001) === 0) {
    log.info({ home: config.home }, 'making the state directory searchable (o+x) for sandbox roots');
    await chmod(config.home, (mode & 0o7777) | 0o001);
  }

  // Sandbox tokens and the upstream proxy's password are sealed in it with the secrets' key (src/secrets/sealed-tokens.ts).
  const sealing = storeSealing(await loadSecretsKey(config.secretsKeyFile), (m) => log.warn(m));
  const store = createSqliteStore(join(config.home, 'cove.db'), sealing);
  const keys = createKeyring(store);
  let apiKey = opts.apiKey;
  if (apiKey !== undefined) keys.seed(apiKey);
  else if (!opts.cluster && keys.list().length === 0) apiKey = keys.create('first').key;
  // Runtime services (model gateway, memory, search): sandboxes reach them on their bridge's host address.
  const servicesUrl = `http://${config.subnet16}.0.1:${config.services.port}`;
  const services = createServices({
    home: config.home,
    configPath: config.services.configPath,
    log,
    sandboxAlive: (id) => {
      try {
        return manager.get(id).state === 'running';
      } catch {
        return false;
      }
    },
    keyAlive: (id) => keys.list().some((k) => k.id === id),
    readSandboxFile: (id, path, max) => readSandboxFile(manager, id, path, max),
  });
  // Agents' PostgreSQL databases: a cluster of Cove's own on the bridge address, started on first use.
  const databases = databasesOf(config, log);
  const databaseAccess = createDatabaseAccess(databases.records, config.instance);
  const templates = createTemplateStore({ home: config.templatesHome, recipesDir: config.recipesDir });
  for (const name of opts.ensureTemplates ?? [])
    await templates.ensure(name, { log: (line) => log.info(line) });

  const audit = createAudit(join(config.home, 'audit.db'), config.audit);
  // Before the manager: a paused sandbox's resume mounts its volumes again.
  const volumes = await VolumeStore.open(join(config.home, 'volumes'), {
    sizeLimitBytes: config.volumeSizeMB * 2 ** 20,
    // A sandbox being killed holds its volumes only until its teardown unmounts them; an image
    // deleted meanwhile lives on (unlinked) under its last mount, so the kill need not be awaited.
    inUse: (id) =>
      store
        .listSandboxes()
        .find((r) => r.state !== 'killing' && r.volumeMounts?.some((m) => m.volumeId === id))?.id,
  });
  const { secrets, egressCa, identity } = await openCredentials(config); // secrets/open.ts
  const { drivers, microvm } = createDrivers(config, log);
  const runtime = traced(createRuntimeSet(drivers, config.runtime), log, 'runtime');
  const manager = createManager({
    audit,
    observeAgent: (id, agent) =>
      observedAgent(id, agent, {
        audit,
        outputBytes: config.audit.outputBytes,
        observe: (op, seconds, outcome) => {
          prometheus.observeAgent(op, seconds, outcome);
          log.debug({ sandbox: id, op, ms: seconds * 1000, outcome }, 'agent call');
        },
      }),
    store,
    templates,
    log,
    connect: connectAgent,
    maxTimeoutMs: config.maxTimeoutMs,
    pool: config.pool,
    builds: config.builds,
    agentTimeoutMs: config.agentTimeoutMs,
    sandboxEnv: (id, owner) => ({
      ...EGRESS_CA_ENV,
      ...(owner ? services.sandboxEnv(id, owner, servicesUrl) : {}),
    }),
    storage: { dir: join(config.home, 'snapshots'), budgetBytes: config.storageBudgetMiB * 2 ** 20 },
    host: {
      runtime,
      network: traced(
        createNetwork({
          name: config.instance,
          prefix16: config.subnet16,
          servicesPort: config.services.port,
          databasesPort: config.databases.port,
          dns: config.dns,
          intercept: secretInjection({
            ca: egressCa,
            secrets: opts.secrets ?? secrets,
            audit,
            sandboxAt: (address) => manager.list().find((s) => s.address === address),
            trustFile: config.egressTrustCa,
            identity,
          }),
        }),
        log,
        'network',
      ),
      sandboxesDir: join(config.home, 'sandboxes'),
      agentBinary: config.agentBinary,
      mountHelper: config.mountHelper,
      volumeSource: (id) => volumes.mountSource(id),
      egressCa: egressCa.certPem,
    },
  });
  // Before start(): adopted sandboxes' agents report to it as they reconnect.
  const prometheus = createPrometheus({
    sandboxes: () => manager.list(),
    pools: () => manager.pool.stats(),
    home: config.home,
    microvm: () => microvm.info(),
  });
  const reconciled = await manager.start();
  const warnings = acceleratorWarnings(microvm, config.runtime);
  await services.listen(`${config.subnet16}.0.1`, config.services.port);
  const stopDatabases = await startDatabases(manager, databases, databaseAccess, {
    address: `${config.subnet16}.0.1`,
    port: config.databases.port,
    log,
  });
  const templateBuilder = createTemplateBuilder({
    home: config.home,
    templatesHome: config.templatesHome,
    recipesDir: config.recipesDir,
    templates,
    open: (template) => manager.buildSandbox(template),
    ...config.templateBuilds,
    log: (msg, err) => log.error({ err }, msg),
  });
  await templateBuilder.builds.recover();
  const sandboxesDir = join(config.home, 'sandboxes');

  const sampled = createSandboxSampler({
    sandboxes: () => manager.list(),
    instance: config.instance,
    sandboxesDir,
    intervalMs: config.metricsIntervalMs,
    log,
  });
  const metrics = sampled.sampler;
  metrics.start();

  // Kept in SQLite: a restart forgets no sandbox's log; those that stopped meanwhile age out.
  const sandboxLog = openSandboxLog(join(config.home, 'sandbox-logs.db'));
  sandboxLog.reconcile(manager.list().map((s) => s.id));
  followSandboxes({
    manager,
    audit,
    log,
    templates,
    sandboxLog,
    sandboxesDir,
    created: (c) => prometheus.observeCreate(c),
    killed: (id, reason) => {
      prometheus.observeKill(reason);
      services.sandboxGone(id);
      sampled.forget(id);
    },
  });
  wireDatabases(manager, databases, databaseAccess, log);

  // The server listens before the API is built: the domain that create replies name by default
  // (`localhost:<port>`, for the SDK's getHost()) needs the port, which is known only now when
  // it was 0. No request is read in between: the listeners are attached in this same turn.
  const { server, port } = await listen({
    host: config.host,
    port: config.port,
    ...(tls && { tls }),
    shouldUpgrade: (req) => gateway.shouldUpgrade(req),
  });
  const domain = sandboxDomain(config, port);

  const app = createApi({
    manager,
    log,
    // A node's callers are API replicas, which checked the key and named its id (src/cluster).
    verifyKey: opts.cluster
      ? () => {
          const keyId = currentRequest()?.keyId;
          return keyId === undefined ? undefined : { id: keyId };
        }
      : (key) => keys.verify(key),
    metrics,
    sandboxLog,
    audit,
    prometheus,
    diskSizeMB: () => {
      const st = statfsSync(sandboxesDir);
      return Math.floor((st.blocks * st.bsize) / 2 ** 20);
    },
    domain,
    templateBuilder,
    volumes: {
      store: volumes,
      sizeLimitBytes: config.volumeSizeMB * 2 ** 20,
      domain,
    },
    secrets,
    identity: identity.servedAt(tls ? `https://api.${domain}` : `http://${config.host}:${port}`),
    inSandboxMcp: await createInSandboxMcp({
      manager,
      log,
      recipesDir: config.recipesDir,
      gitBase: config.mcpGitBase,
    }),
  });
  const url = `${tls ? 'https' : 'http'}://${config.host}:${port}`;
  // MCP's Streamable HTTP at /mcp, behind the API's key check; its tools call the manager.
  const mcp = createMcpEndpoint({
    manager,
    sandboxLog,
    log,
    domain,
    url,
    scheme: tls ? 'https' : 'http',
    cleanup: config.mcpCleanup,
    memory: services.memory,
  });
  app.route('/', mcp.routes);
  app.route('/', serviceUsageRoutes(services.usage));
  app.route('/', services.routes);
  app.route('/', databaseRoutes(databases));
  app.route(
    '/',
    quotaRoutes(services.quotas, (id) => keys.list().some((k) => k.id === id)),
  );
  if (!opts.cluster) app.route('/', keyRoutes(keys)); // a node's keys are its replicas' (src/cluster)
  const envd = createEnvd({ manager, log }, envdServices);
  const honoListener = getRequestListener(app.fetch);
  const api: RequestListener = (req, res) => void honoListener(req, res);
  const gateway = createGateway({ manager, envd, api, domain: config.domain });
  serve(server, gateway, (req) => (opts.cluster ? opts.cluster.admit(req) : {}));

  return {
    manager,
    log,
    reconciled,
    url,
    domain,
    warnings,
    ...(tls && { tls }),
    ...(apiKey !== undefined && { apiKey }),
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Streaming responses (exec, watches) and WebSockets would hold close() open: end them.
      gateway.close();
      await mcp.close();
      await templateBuilder.builds.close();
      server.closeAllConnections();
      await closed;
      await metrics.stop();
      await manager.close();
      await volumes.close();
      await services.close();
      await stopDatabases();
      databases.close();
      store.close();
      audit.store?.close();
      sandboxLog.close();
      await instanceLock.release();
    },
  };
}
