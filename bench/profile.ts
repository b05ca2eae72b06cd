// `node bench/profile.ts [N]`: where a Cove create goes. Wires the same components as
// startCove (src/main.ts), with timers around the runtime, network and agent connection,
// then creates N sandboxes, runs `true` twice in each and kills it, one at a time.
// Bench-only instrumentation: nothing in src/ is changed. Needs root.
import { chmod, mkdir, mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectAgent } from '../src/agent-channel/client.ts';
import { loadConfig } from '../src/config/config.ts';
import { createLogger } from '../src/core/log.ts';
import { createManager, type Manager } from '../src/manager/manager.ts';
import { createNetwork } from '../src/network/network.ts';
import { createCrunDriver } from '../src/runtime/oci/crun.ts';
import { createRuntimeSet } from '../src/runtime/set.ts';
import { createSqliteStore } from '../src/store/sqlite.ts';
import { createTemplateStore } from '../src/templates/index.ts';
import { mountsUnder, sh } from './sh.ts';
import { since, summarize } from './stats.ts';

const INSTANCE = process.env.BENCH_INSTANCE ?? 'covebp';
const runs = Number(process.argv[2] ?? process.env.BENCH_RUNS ?? 30);

/** Durations of the current create, by step. */
let current: Record<string, number> = {};
const add = (step: string, ms: number) => (current[step] = (current[step] ?? 0) + ms);

/** Wraps the named async methods of `obj` with timers; the others are left as they are. */
function timed<T extends object>(obj: T, prefix: string, methods: string[]): T {
  const wrapped: Record<string, unknown> = {};
  for (const name of methods) {
    const fn = (obj as Record<string, unknown>)[name];
    if (typeof fn !== 'function') throw new Error(`${prefix}.${name} is not a method`);
    wrapped[name] = async (...args: unknown[]) => {
      const start = performance.now();
      try {
        return await (fn as (...a: unknown[]) => Promise<unknown>).apply(obj, args);
      } finally {
        add(`${prefix}.${name}`, since(start));
      }
    };
  }
  return { ...obj, ...wrapped };
}

function execTrue(manager: Manager, id: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    manager
      .exec(
        id,
        { argv: ['true'] },
        {
          onData() {},
          onExit: (r) => (r.exitCode === 0 ? resolve() : reject(new Error(`exit ${r.exitCode}`))),
        },
      )
      .catch(reject);
  });
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'covebp-home-'));
  await chmod(home, 0o711);
  const config = loadConfig({
    home,
    templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    instance: INSTANCE,
    subnet16: process.env.BENCH_SUBNET ?? '10.14',
    port: 0,
    logLevel: 'warn',
  });
  await mkdir(join(home, 'sandboxes'), { recursive: true, mode: 0o711 });
  const log = createLogger('warn');
  const store = createSqliteStore(join(home, 'cove.db'));
  const templates = createTemplateStore({ home: config.templatesHome, recipesDir: config.recipesDir });
  const runtime = createRuntimeSet(
    [
      timed(
        createCrunDriver({
          stateRoot: config.crunRoot,
          mountHelper: config.mountHelper,
          cgroupParent: INSTANCE,
        }),
        'crun',
        ['create', 'start', 'destroy'],
      ),
    ],
    'crun',
  );
  const network = timed(createNetwork({ name: INSTANCE, prefix16: config.subnet16 }), 'net', [
    'attach',
    'detach',
  ]);
  const manager = createManager({
    store,
    templates: timed(templates, 'templates', ['get']),
    log,
    connect: async (...args: Parameters<typeof connectAgent>) => {
      const start = performance.now();
      try {
        return await connectAgent(...args);
      } finally {
        add('agent.connect', since(start));
      }
    },
    maxTimeoutMs: config.maxTimeoutMs,
    agentTimeoutMs: config.agentTimeoutMs,
    host: {
      runtime,
      network,
      sandboxesDir: join(home, 'sandboxes'),
      agentBinary: config.agentBinary,
      mountHelper: config.mountHelper,
    },
  });
  await manager.start();

  const samples: Record<string, number>[] = [];
  try {
    for (let i = 0; i < runs + 3; i++) {
      current = {};
      let start = performance.now();
      const info = await manager.create({ template: 'base', timeoutMs: 60_000 });
      current['create (whole)'] = since(start);
      start = performance.now();
      await execTrue(manager, info.id);
      current['first exec (whole)'] = since(start);
      start = performance.now();
      await execTrue(manager, info.id);
      current['second exec'] = since(start);
      start = performance.now();
      await manager.kill(info.id);
      current['kill (whole)'] = since(start);
      if (i >= 3) samples.push(current); // 3 warm-up creates
    }
  } finally {
    for (const s of manager.list()) await manager.kill(s.id).catch(() => undefined);
    // close() may or may not return a promise (it is changing under src/manager): wait either way.
    await Promise.resolve(manager.close());
    store.close();
    const left = [
      ...(await mountsUnder(home)),
      ...(await sh('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.startsWith(`${INSTANCE}-`)),
    ];
    if (left.length === 0) {
      await sh('ip', ['link', 'del', `${INSTANCE}0`]);
      await sh('nft', ['delete', 'table', 'inet', INSTANCE]);
      await rm(join('/run', INSTANCE), { recursive: true, force: true });
      for (const h of await readdir('/sys/fs/cgroup').catch(() => [])) {
        await rmdir(join('/sys/fs/cgroup', h, INSTANCE)).catch(() => undefined);
      }
      await rm(home, { recursive: true, force: true });
    } else console.error(`profile: LEFT BEHIND: ${left.join(', ')}`);
  }

  const steps = [...new Set(samples.flatMap((s) => Object.keys(s)))];
  // What no wrapper sees: mkdir/chown, the overlay (cove-mount up), /etc/hosts, the database.
  for (const s of samples) {
    const wrappedCreate = ['templates.get', 'crun.create', 'net.attach', 'crun.start', 'agent.connect'];
    s['create: rest (dirs, cove-mount up, /etc/hosts, sqlite)'] =
      (s['create (whole)'] ?? 0) - wrappedCreate.reduce((sum, k) => sum + (s[k] ?? 0), 0);
    s['kill: rest (umount, rm, sqlite)'] =
      (s['kill (whole)'] ?? 0) - (s['crun.destroy'] ?? 0) - (s['net.detach'] ?? 0);
  }
  steps.push('create: rest (dirs, cove-mount up, /etc/hosts, sqlite)', 'kill: rest (umount, rm, sqlite)');
  console.log(`Cove create profile, ${runs} sandboxes one at a time (3 warm-up discarded), ms\n`);
  console.log('| step | p50 | p90 | mean | min |\n| --- | ---: | ---: | ---: | ---: |');
  for (const step of steps) {
    const s = summarize(samples.map((x) => x[step] ?? 0));
    console.log(
      `| ${step} | ${s.p50.toFixed(2)} | ${s.p90.toFixed(2)} | ${s.mean.toFixed(2)} | ${s.min.toFixed(2)} |`,
    );
  }
}

main().catch((err: unknown) => {
  console.error('profile:', err);
  process.exit(1);
});
