// `npm run bench -- --only scale-out` (issue 16): the distributed create path against `cove
// serve` on the same machine, as test/cluster.test.ts builds it (a private PostgreSQL, `cove
// api` on a test bridge, `cove node`s each in a network namespace, all child processes):
// sequential cold creates (each then killed) over HTTP, p50/p99; a burst of concurrent creates,
// creates per second; with `cove serve`, one node and three. The nodes share this machine's
// cores, so three nodes are no speed-up here: the figure is the overhead of the path. Then the
// time from a node's kill -9 to its sandbox being reported lost (COVE_NODE_STALE_MS 3000).
// Counts: BENCH_SCALE_RUNS (30), BENCH_SCALE_BURST (24, 6 at a time). Needs root.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { nodeSecret } from '../src/cluster/auth.ts';
import { openPostgresDb } from '../src/cluster/db-postgres.ts';
import { openClusterStore } from '../src/cluster/store.ts';
import { hashApiKey } from '../src/keys/keys.ts';
import { makeHosts, spawnCove, type Proc } from '../test/cluster-hosts.ts';
import { startTestPostgres } from '../test/postgres.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { since, summarize } from './stats.ts';
import { markdownTable, ms } from './table.ts';

const RUNS = Number(process.env.BENCH_SCALE_RUNS ?? 30);
const BURST = Number(process.env.BENCH_SCALE_BURST ?? 24);
const PARALLEL = 6;
const net = process.env.BENCH_SUBNET ?? '10.23';
const nodeNets = (process.env.BENCH_NODE_SUBNETS ?? '10.24,10.25,10.26').split(',');
const prefix = `${BENCH_INSTANCE}s`.replace(/[^a-z]/g, '').slice(0, 6);
const clusterKey = `e2b_${randomBytes(20).toString('hex')}`;
const POOLS_OFF = { COVE_POOL_MIN: '0', COVE_POOL_MAX: '0', COVE_POOL_BUDGET: '0' };
const templatesHome = process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';

async function create(url: string, key: string): Promise<string> {
  const res = await fetch(`${url}/sandboxes`, {
    method: 'POST',
    headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ templateID: 'base', timeout: 120 }),
  });
  if (res.status !== 201) throw new Error(`create: ${res.status} ${await res.text()}`);
  return ((await res.json()) as { sandboxID: string }).sandboxID;
}
const kill = (url: string, key: string, id: string) =>
  fetch(`${url}/sandboxes/${id}`, { method: 'DELETE', headers: { 'x-api-key': key } }).then((r) =>
    r.body?.cancel(),
  );

/** Sequential creates (2 of warm-up), then a burst: the rows of one setup. */
async function measure(name: string, url: string, key: string, rows: string[][]): Promise<void> {
  const samples: number[] = [];
  for (let i = 0; i < RUNS + 2; i++) {
    const start = performance.now();
    const id = await create(url, key);
    const took = since(start);
    await kill(url, key, id);
    if (i >= 2) samples.push(took);
  }
  const ids: string[] = [];
  const start = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next < BURST) {
        next++;
        ids.push(await create(url, key));
      }
    }),
  );
  const perSecond = BURST / ((performance.now() - start) / 1000);
  for (const id of ids) await kill(url, key, id);
  const s = summarize(samples);
  rows.push([name, String(s.n), ms(s.p50), ms(s.p99), perSecond.toFixed(1)]);
}

export async function scaleOutMain(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root');
  const rows: string[][] = [];
  const homes = [0, 1, 2].map((i) => join(tmpdir(), `cove-bench-${prefix}${'abc'[i]}`));
  const procs: Proc[] = [];
  let deathToLost = Number.NaN;
  // cove serve first, alone on the machine.
  const serveHome = join(tmpdir(), `cove-bench-${prefix}x`);
  mkdirSync(serveHome, { recursive: true });
  const serve = await spawnCove('serve', {
    ...POOLS_OFF,
    COVE_HOME: serveHome,
    COVE_INSTANCE: `${prefix}x`,
    COVE_SUBNET: nodeNets[1]!,
    COVE_TEMPLATES_HOME: templatesHome,
    COVE_HOST: '127.0.0.1',
    COVE_PORT: '0',
  });
  try {
    // The first key a fresh home mints, printed once.
    const first = /E2B_API_KEY=(\S+)/.exec(serve.output())?.[1];
    if (!first) throw new Error(`cove serve printed no key: ${serve.output()}`);
    await measure('`cove serve`', serve.url, first, rows);
  } finally {
    await serve.stop();
    rmSync(serveHome, { recursive: true, force: true });
  }

  const pg = startTestPostgres();
  const store = await openClusterStore(openPostgresDb(pg.url));
  await store.insertApiKey({
    id: 'key_bench',
    name: 'bench',
    hash: hashApiKey(clusterKey),
    mask: 'e2b_…',
    createdAt: 0,
  });
  const hosts = makeHosts(prefix, net, 3);
  const secret = randomBytes(32).toString('hex');
  try {
    const api = await spawnCove('api', {
      COVE_DATABASE_URL: pg.url,
      COVE_CLUSTER_SECRET: secret,
      COVE_HOST: hosts.bridgeAddress,
      COVE_PORT: '0',
      COVE_NODE_STALE_MS: '3000',
    });
    procs.push(api);
    const startNode = async (i: number) => {
      mkdirSync(homes[i]!, { recursive: true });
      const node = await spawnCove(
        'node',
        {
          ...POOLS_OFF,
          COVE_HOME: homes[i]!,
          COVE_INSTANCE: `${prefix}${'abc'[i]}`,
          COVE_SUBNET: nodeNets[i]!,
          COVE_TEMPLATES_HOME: templatesHome,
          COVE_HOST: hosts.nodeAddress(i),
          COVE_PORT: '3000',
          COVE_NODE_NAME: `n${i}`,
          COVE_NODE_SECRET: nodeSecret(secret, `n${i}`),
          COVE_API_URLS: api.url,
          COVE_HEARTBEAT_MS: '500',
        },
        hosts.netns(i),
      );
      procs.push(node);
      return node;
    };
    const up = async (n: number) => {
      for (let t = 0; (await store.listNodes()).filter((x) => x.state === 'up').length < n; t++) {
        if (t > 150) throw new Error('nodes did not come up');
        await new Promise((r) => setTimeout(r, 200));
      }
    };
    const n0 = await startNode(0);
    await up(1);
    await measure('`cove api` → 1 `cove node`', api.url, clusterKey, rows);
    await startNode(1);
    await startNode(2);
    await up(3);
    await measure('`cove api` → 3 `cove node`s', api.url, clusterKey, rows);
    // A sandbox on n0, then n0 killed: how long until lists stop showing it.
    let victim: string | undefined;
    for (let i = 0; i < 20 && !victim; i++) {
      const id = await create(api.url, clusterKey);
      if ((await store.getPlacement(id))?.node === 'n0') victim = id;
      else await kill(api.url, clusterKey, id);
    }
    if (victim) {
      await n0.kill();
      const killed = performance.now();
      while ((await store.getPlacement(victim))?.state !== 'lost')
        await new Promise((r) => setTimeout(r, 50));
      deathToLost = since(killed);
      procs.splice(procs.indexOf(n0), 1, await startNode(0)); // its return removes the sandbox
      while ((await store.listPlacements('n0')).length > 0) await new Promise((r) => setTimeout(r, 200));
    }
  } finally {
    for (const p of procs.reverse()) await p.stop();
    hosts.remove();
    await store.close();
    pg.stop();
    for (const h of homes) rmSync(h, { recursive: true, force: true });
  }

  const m = await describeMachine(resolve(import.meta.dirname, '..'));
  const load = readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  console.log(`\n### Scale-out (issue 16)\n`);
  console.log(`${m.cpuModel}, ${m.cores} cores, kernel ${m.kernel}, commit ${m.commit}, load ${load}\n`);
  console.log(
    markdownTable(
      ['path', 'n', 'create p50 ms', 'create p99 ms', `creates/s (${PARALLEL} at a time)`],
      rows,
      1,
    ),
  );
  console.log(`\nnode kill -9 → its sandbox reported lost: ${ms(deathToLost)} ms (stale time 3000 ms)`);
  return 0;
}
