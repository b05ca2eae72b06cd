import { chmod, mkdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createServer, type RequestListener } from 'node:http';
import { getRequestListener } from '@hono/node-server';
import { connectAgent } from './agent-channel/client.ts';
import { createApi } from './api/app.ts';
import type { Config } from './config/config.ts';
import { createEnvd } from './envd/index.ts';
import { envdServices } from './envd/services.ts';
import { createGateway } from './gateway/gateway.ts';
import { createLogger, type Logger } from './core/log.ts';
import { createManager, type Manager } from './manager/manager.ts';
import type { ReconcileReport } from './manager/reconcile.ts';
import { createNetwork } from './network/network.ts';
import { createCrunDriver } from './runtime/oci/crun.ts';
import { createSqliteStore } from './store/sqlite.ts';
import { createTemplateStore } from './templates/index.ts';

export interface Cove {
  manager: Manager;
  log: Logger;
  reconciled: ReconcileReport;
  /** The address the HTTP server listens on. */
  url: string;
  /** Stops serving. Sandboxes keep running; the next start adopts them. */
  close(): Promise<void>;
}

/** The one place where Cove's components are built from config and wired together. */
export async function startCove(
  config: Config,
  opts: { log?: Logger; ensureTemplates?: string[] } = {},
): Promise<Cove> {
  const log = opts.log ?? createLogger(config.logLevel);
  await mkdir(join(config.home, 'sandboxes'), { recursive: true, mode: 0o711 });
  // The runtime opens each sandbox's rootfs as the sandbox's mapped root, a host uid with no
  // rights of its own: every directory above it must be searchable (o+x) by anyone.
  const { mode } = await stat(config.home);
  if ((mode & 0o001) === 0) {
    log.info({ home: config.home }, 'making the state directory searchable (o+x) for sandbox roots');
    await chmod(config.home, (mode & 0o7777) | 0o001);
  }

  const store = createSqliteStore(join(config.home, 'cove.db'));
  const templates = createTemplateStore({ home: config.templatesHome, recipesDir: config.recipesDir });
  for (const name of opts.ensureTemplates ?? [])
    await templates.ensure(name, { log: (line) => log.info(line) });

  const manager = createManager({
    store,
    templates,
    log,
    connect: connectAgent,
    maxTimeoutMs: config.maxTimeoutMs,
    agentTimeoutMs: config.agentTimeoutMs,
    host: {
      runtime: createCrunDriver({
        stateRoot: config.crunRoot,
        mountHelper: config.mountHelper,
        cgroupParent: config.instance,
      }),
      network: createNetwork({ name: config.instance, prefix16: config.subnet16 }),
      sandboxesDir: join(config.home, 'sandboxes'),
      agentBinary: config.agentBinary,
      mountHelper: config.mountHelper,
    },
  });
  const reconciled = await manager.start();

  const app = createApi(manager, log);
  const envd = createEnvd({ manager, log }, envdServices);
  const honoListener = getRequestListener(app.fetch);
  const api: RequestListener = (req, res) => void honoListener(req, res);
  const server = createServer({ keepAliveTimeout: 65_000 }, createGateway({ manager, envd, api }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;

  return {
    manager,
    log,
    reconciled,
    url: `http://${config.host}:${port}`,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Streaming responses (exec, watches) would hold close() open: end them.
      server.closeAllConnections();
      await closed;
      manager.close();
      store.close();
    },
  };
}
