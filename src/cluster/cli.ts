import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { clientApiKey, loadConfig, serverUrl } from '../config/config.ts';
import { createClient } from '../cli/client.ts';
import { CoveError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { NODE_NAME, nodeSecret } from './auth.ts';

/**
 * `cove api`, `cove node` and `cove cluster node-secret` (docs/scale-out.md). Settings come
 * from the environment, as a container sets them: COVE_CLUSTER_SECRET (replicas),
 * COVE_DATABASE_URL (postgresql://… or a SQLite file), COVE_NODE_NAME, COVE_NODE_SECRET (or _FILE),
 * COVE_API_URLS, COVE_NODE_URL, COVE_NODE_SLOTS, COVE_HEARTBEAT_MS, COVE_NODE_STALE_MS, COVE_PLACEMENT_GRACE_MS.
 */
export function clusterCommands(env: NodeJS.ProcessEnv = process.env): Command[] {
  const need = (name: string): string => {
    const value = env[name];
    if (!value) throw new CoveError('invalid_argument', `${name} is not set (docs/scale-out.md)`);
    return value;
  };
  const number = (name: string, fallback: number): number => {
    const n = Number(env[name] ?? fallback);
    if (!Number.isInteger(n) || n <= 0)
      throw new CoveError('invalid_argument', `${name}: a positive integer`);
    return n;
  };

  const api = new Command('api')
    .description(
      'serve a stateless API replica of a cluster: keys, placement, routing to nodes (state in COVE_DATABASE_URL)',
    )
    .action(async () => {
      const { openClusterStore } = await import('./store.ts');
      const { startApi } = await import('./api.ts');
      const config = loadConfig({}, env);
      const log = createLogger(config.logLevel);
      const url = env.COVE_DATABASE_URL ?? join(config.home, 'cluster.db');
      const db = /^postgres(ql)?:/.test(url)
        ? (await import('./db-postgres.ts')).openPostgresDb(url, { log })
        : (await import('./db-sqlite.ts')).openSqliteDb(url.replace(/^sqlite:/, ''));
      const store = await openClusterStore(db);
      const cove = await startApi({
        store,
        clusterSecret: need('COVE_CLUSTER_SECRET'),
        host: config.host,
        port: config.port,
        domain: config.domain,
        staleMs: number('COVE_NODE_STALE_MS', 10_000),
        placementGraceMs: number('COVE_PLACEMENT_GRACE_MS', 30_000),
        log,
      });
      process.stdout.write(
        `Cove API replica is serving on ${cove.url}\n` +
          (cove.apiKey
            ? `  a first API key was made; it is shown only this once:\nexport E2B_API_KEY=${cove.apiKey}\n`
            : ''),
      );
      const stop = () =>
        void cove
          .close()
          .then(() => store.close())
          .then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });

  const node = new Command('node')
    .description('run sandboxes on this host for a cluster of API replicas (COVE_API_URLS)')
    .action(async () => {
      const { startNode } = await import('./node.ts');
      const config = loadConfig({}, env);
      const log = createLogger(config.logLevel);
      const name = env.COVE_NODE_NAME ?? hostname().toLowerCase();
      if (!NODE_NAME.test(name))
        throw new CoveError('invalid_argument', `node name ${name}: [a-z0-9.-], 253 at most`);
      const node = await startNode(config, {
        name,
        // A file (COVE_NODE_SECRET_FILE): a secret each machine keeps, as a DaemonSet needs (deploy/kubernetes).
        secret: env.COVE_NODE_SECRET_FILE
          ? readFileSync(env.COVE_NODE_SECRET_FILE, 'utf8').trim()
          : need('COVE_NODE_SECRET'),
        apiUrls: need('COVE_API_URLS')
          .split(',')
          .map((u) => u.trim())
          .filter(Boolean),
        advertiseUrl: env.COVE_NODE_URL ?? `http://${config.host}:${config.port}`,
        slots: number('COVE_NODE_SLOTS', 100),
        heartbeatMs: number('COVE_HEARTBEAT_MS', 2_000),
        log,
      });
      process.stdout.write(`Cove node ${name} is serving on ${node.cove.url}\n`);
      const stop = () => void node.close().then(() => process.exit(0));
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });

  // Against a replica (COVE_URL or E2B_API_URL, with an API key), as the other client commands.
  const client = () => createClient(serverUrl(env), clientApiKey(env));
  const drain = (on: boolean) => async (name: string) => {
    const r = await client().json<{ node: string; sandboxes: number }>(
      on ? 'POST' : 'DELETE',
      `/cluster/v1/nodes/${encodeURIComponent(name)}/drain`,
    );
    process.stdout.write(
      on
        ? `node ${r.node} is draining: it takes no new sandboxes; ${r.sandboxes} still run there\n`
        : `node ${r.node} takes sandboxes again\n`,
    );
  };
  node
    .command('drain <name>')
    .description('stop placing sandboxes on a node; those it runs finish there (cove node list shows them)')
    .action(drain(true));
  node.command('undrain <name>').description('let a drained node take sandboxes again').action(drain(false));
  node
    .command('list')
    .description("the cluster's nodes: state, free slots, sandboxes placed")
    .action(async () => {
      const nodes = await client().json<
        Array<{ name: string; state: string; free: number; slots: number; sandboxes: number; url: string }>
      >('GET', '/cluster/v1/nodes');
      for (const n of nodes)
        process.stdout.write(
          `${n.name}\t${n.state}\t${n.free}/${n.slots} free\t${n.sandboxes} sandboxes\t${n.url}\n`,
        );
    });

  const cluster = new Command('cluster').description('cluster administration');
  cluster
    .command('node-secret <name>')
    .description("print a node's secret (COVE_NODE_SECRET), derived from COVE_CLUSTER_SECRET")
    .action((name: string) => {
      if (!NODE_NAME.test(name))
        throw new CoveError('invalid_argument', `node name ${name}: [a-z0-9.-], 253 at most`);
      process.stdout.write(`${nodeSecret(need('COVE_CLUSTER_SECRET'), name)}\n`);
    });
  return [api, node, cluster];
}
