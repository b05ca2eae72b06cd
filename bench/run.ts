// `npm run bench`: Cove's create and exec latencies and file throughput, in process, over
// HTTP and through the e2b SDK, beside crun and podman, measured in the same run on the same
// machine; then pool-hit creates, a burst of SDK creates and the density of idle sandboxes
// (issue 5), and a summary against the targets. See docs/benchmarks.md for the last result.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { createTemplateStore } from '../src/templates/index.ts';
import { describeMachine } from './machine.ts';
import { percentile, summarize, type Summary } from './stats.ts';
import type { Subject } from './subject.ts';
import type { BurstResult } from './burst.ts';
import { coveDensity, crunDensity, podmanDensity, type DensityResult } from './density.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { markdownTable, ms, ratioCell } from './table.ts';

/** `fn` run at most once; later calls get the first call's promise. */
function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

const HELP = `usage: npm run bench -- [options]   (each option also reads an environment variable)
  --quick           the whole suite in under two minutes: fewer runs,  BENCH_QUICK=1
                    burst 100, density 100 (defaults in brackets)
  --runs N          cold creates per runtime, after warm-up       BENCH_RUNS      (50 [10])
  --pool-runs N     pool-hit creates, in process and SDK          BENCH_POOL_RUNS (= --runs)
  --rt-runs N       command round trips per runtime               BENCH_RT_RUNS   (200 [50])
  --warmup N        discarded creates per runtime (round trips: 4N) BENCH_WARMUP  (5 [2])
  --podman-runs N   creates for podman (slow)                     BENCH_PODMAN_RUNS (= --runs [5])
  --podman-rt-runs N round trips for podman                       BENCH_PODMAN_RT_RUNS (= --rt-runs [20])
  --files-runs N    writes and reads of the file per runtime      BENCH_FILES_RUNS (10 [2])
  --files-mib N     size of the file moved, MiB                   BENCH_FILES_MIB (64 [16])
  --burst N         SDK creates in the burst (0: skip)            BENCH_BURST     (1000 [100])
  --burst-procs N   child processes of SDK clients                BENCH_BURST_PROCS (5)
  --burst-clients N concurrent SDK clients per process            BENCH_BURST_CLIENTS (10)
  --density N       idle Cove sandboxes at once (0: skip)         BENCH_DENSITY   (1000 [100])
  --crun-density N  idle crun containers at once                  BENCH_CRUN_DENSITY (100 [20])
  --podman-density N idle podman containers at once               BENCH_PODMAN_DENSITY (50 [10])
  --only LIST       comma-separated: cove,cove-http,cove-e2b,cove-curl,sdk-null,crun,podman  BENCH_ONLY (all)
                    (sdk-null: the e2b SDK against a null server, its own ceiling)
                    or code-interpreter alone: bench/code-interpreter.ts (its own options: BENCH_CI_*)
                    or templates alone: bench/templates.ts (BENCH_TEMPLATES_N)
                    or runsc alone: bench/runsc.ts (gVisor beside crun; BENCH_RUNSC_*)
                    or microvm alone: bench/microvm.ts (QEMU VMs beside crun and runsc; BENCH_MICROVM_*)
                    or computer-use alone: bench/computer-use.ts (desktop and browser; BENCH_CU_RUNS)
                    or services alone: bench/services.ts (BENCH_SVC_RUNS, _ENTRIES, _QUERIES)
                    or audit alone: the audit trail on vs off (bench/audit.ts, BENCH_AUDIT_*);
                    a full run ends with it
                    or pause alone: bench/pause.ts; or proxy alone: bench/proxy.ts (BENCH_PROXY_RUNS)
                    or pause alone: bench/pause.ts (pause, resume, snapshot, fork; BENCH_PAUSE_RUNS)
                    or volumes alone: bench/volumes.ts (create with 0/1/4 volumes; BENCH_VOL_RUNS)
                    or hot-path alone: the SDK's create/command/files path, server CPU per op (BENCH_HOT_RUNS)
                    or scale-out alone: bench/scale-out.ts (cove api + nodes vs serve; BENCH_SCALE_*)
Cold creates, round trips, files and density run on a Cove with pools off; pool-hit creates
and the burst on a second start of it with its pools on (COVE_POOL_*, defaults min 2, max 8).
Environment: COVE_TEMPLATES_HOME (/var/lib/cove), BENCH_INSTANCE (coveb: the prefix of everything the
bench makes on the host), BENCH_SUBNET (10.13), COVE_LOG_LEVEL (warn).`;

/** Benches of their own, each run alone by `--only <name>` (their counts in their files). */
const SOLO: Record<string, () => Promise<number | void>> = {
  // Computer and browser use (issue 11), BENCH_CU_RUNS.
  'computer-use': async () => (await import('./computer-use.ts')).computerUseMain([]),
  // The code interpreter's latencies (issue 7), BENCH_CI_*; `node bench/code-interpreter.ts --help`.
  'code-interpreter': async () => (await import('./code-interpreter.ts')).codeInterpreterMain([]),
  // Template builds and creates from a 20-step template (issue 9), BENCH_TEMPLATES_N.
  templates: async () => (await import('./templates.ts')).templatesMain(),
  // The gVisor backend beside crun, and its checkpoint/restore (issue 6), BENCH_RUNSC_*.
  runsc: async () => (await import('./runsc.ts')).runscMain(),
  // The QEMU microVM backend beside crun and runsc (issue 10), BENCH_MICROVM_*.
  microvm: async () => (await import('./microvm.ts')).microvmMain(),
  // Pause, resume, snapshot and fork latencies (issue 6).
  pause: async () => (await import('./pause.ts')).pauseMain(),
  // Model gateway overhead and memory recall (issue 14), BENCH_SVC_*.
  services: async () => (await import('./services.ts')).servicesMain([]),
  // The cost of the audit trail (issue 15), BENCH_AUDIT_*; a full run also ends with it.
  audit: async () => (await import('./audit.ts')).auditMain([]),
  // What the port proxy adds to a request (issue 4), BENCH_PROXY_RUNS: the script runs on import.
  proxy: async () => void (await import('./proxy.ts')),
  // Agents' databases (issue 14): first create, create/delete, sandbox create with one; BENCH_DB_*.
  databases: async () => (await import('./databases.ts')).databasesMain(),
  // What mounting volumes adds to a create and a kill, and a volume create (issue 13), BENCH_VOL_RUNS.
  volumes: async () => (await import('./volumes.ts')).volumesMain(),
  // The SDK's request path by the server's CPU per operation (issues 3, 5), BENCH_HOT_RUNS.
  'hot-path': async () => (await import('./hot-path.ts')).hotPathMain([]),
  // The distributed create path against cove serve, and node death to lost (issue 16), BENCH_SCALE_*.
  'scale-out': async () => (await import('./scale-out.ts')).scaleOutMain(),
};

const RUNTIMES = ['cove', 'cove-http', 'cove-e2b', 'cove-curl', 'sdk-null', 'crun', 'podman'] as const;
const PEERS = ['crun', 'podman'] as const;

/** Table rows: scenario label and the phase of a create sample it reads. */
const CREATE_ROWS = [
  ['create + first command', 'total'],
  ['  of which create', 'create'],
  ['  of which first command', 'first'],
  ['kill (separate)', 'kill'],
] as const;
const ROUND_TRIP = 'command round-trip';
const SHELL_ROUND_TRIP = 'round-trip, bash -l -c true';

/** One row of the file-transfer table: rates in MB/s (10^6 bytes per second). */
interface RateRow {
  scenario: string;
  runtime: string;
  n: number;
  p50: number;
  /** The 10th percentile of the rates: the slow tail (p90 of the times). */
  p10: number;
  min: number;
  max: number;
  /** ms at the median. */
  p50ms: number;
  /** The bench process's CPU per operation, p50 (ms): the server's, for the runtimes it serves;
   * and of that, its main thread's (the event loop, which every byte crosses). */
  cpuMs?: number;
  mainCpuMs?: number;
  /** Cove's MB/s p50 divided by each peer's (above 1: Cove is faster). */
  ratios: Partial<Record<(typeof PEERS)[number], number>>;
}

interface Row extends Summary {
  scenario: string;
  runtime: string;
  /** Cove's p50 divided by each peer's p50 in the same scenario (Cove rows only). */
  ratios: Partial<Record<(typeof PEERS)[number], number>>;
}

/** One line of the summary: a target of issue 5 against what this run measured. */
interface SummaryRow {
  scenario: string;
  target: string;
  measured: string;
  verdict: 'met' | 'missed' | 'n/a';
  /** Cove's figure divided by the peer's in the same scenario (below 1: Cove is better). */
  ratios: Partial<Record<(typeof PEERS)[number], number>>;
}

function summaryTable(rows: SummaryRow[]): string {
  const head = ['scenario', 'target', 'measured', 'verdict', 'cove/crun', 'cove/podman'];
  const body = rows.map((r) => [
    r.scenario,
    r.target,
    r.measured,
    r.verdict === 'missed' ? '**missed**' : r.verdict,
    ratioCell(r.ratios.crun),
    ratioCell(r.ratios.podman),
  ]);
  return markdownTable(head, body, 4);
}

function positive(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: expected a whole number, got ${raw}`);
  return n;
}

function table(rows: Row[], peers: readonly string[]): string {
  const head = [
    'scenario',
    'runtime',
    'n',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'mean ms',
    'min ms',
    'max ms',
    ...peers.map((p) => `cove/${p} p50`),
  ];
  const body = rows.map((r) => [
    r.scenario.trim() === r.scenario ? r.scenario : '↳ ' + r.scenario.trim(),
    r.runtime,
    String(r.n),
    ms(r.p50),
    ms(r.p90),
    ms(r.p99),
    ms(r.mean),
    ms(r.min),
    ms(r.max),
    ...peers.map((p) => ratioCell(r.ratios[p as (typeof PEERS)[number]])),
  ]);
  return markdownTable(head, body, 2);
}

function rateTable(rows: RateRow[], peers: readonly string[], mib: number): string {
  const head = [
    'scenario',
    'runtime',
    'n',
    'p50 MB/s',
    'p10 MB/s',
    'min MB/s',
    'max MB/s',
    `p50 ms (${mib} MiB)`,
    'server CPU ms p50 (main thread)',
    ...peers.map((p) => `cove/${p} MB/s`),
  ];
  const body = rows.map((r) => [
    r.scenario,
    r.runtime,
    String(r.n),
    r.p50.toFixed(0),
    r.p10.toFixed(0),
    r.min.toFixed(0),
    r.max.toFixed(0),
    ms(r.p50ms),
    r.cpuMs === undefined ? '—' : `${r.cpuMs.toFixed(0)} (${(r.mainCpuMs ?? 0).toFixed(0)})`,
    ...peers.map((p) => ratioCell(r.ratios[p as (typeof PEERS)[number]])),
  ]);
  return markdownTable(head, body, 2);
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string' },
      'rt-runs': { type: 'string' },
      warmup: { type: 'string' },
      'podman-runs': { type: 'string' },
      'podman-rt-runs': { type: 'string' },
      'files-runs': { type: 'string' },
      'files-mib': { type: 'string' },
      quick: { type: 'boolean' },
      'pool-runs': { type: 'string' },
      burst: { type: 'string' },
      'burst-procs': { type: 'string' },
      'burst-clients': { type: 'string' },
      density: { type: 'string' },
      'crun-density': { type: 'string' },
      'podman-density': { type: 'string' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const env = process.env;
  const quick = values.quick === true || env.BENCH_QUICK === '1';
  const q = (full: number, short: number) => (quick ? short : full);
  const runs = positive(values.runs, env.BENCH_RUNS, q(50, 10), 'runs');
  const poolRuns = positive(values['pool-runs'], env.BENCH_POOL_RUNS, runs, 'pool-runs');
  const rtRuns = positive(values['rt-runs'], env.BENCH_RT_RUNS, q(200, 50), 'rt-runs');
  const warmup = positive(values.warmup, env.BENCH_WARMUP, q(5, 2), 'warmup');
  const podmanRuns = positive(values['podman-runs'], env.BENCH_PODMAN_RUNS, q(runs, 5), 'podman-runs');
  const podmanRtRuns = positive(
    values['podman-rt-runs'],
    env.BENCH_PODMAN_RT_RUNS,
    q(rtRuns, 20),
    'podman-rt-runs',
  );
  const filesRuns = positive(values['files-runs'], env.BENCH_FILES_RUNS, q(10, 2), 'files-runs');
  const filesMib = positive(values['files-mib'], env.BENCH_FILES_MIB, q(64, 16), 'files-mib');
  const burstN = positive(values.burst, env.BENCH_BURST, q(1000, 100), 'burst');
  const burstProcs = Math.max(1, positive(values['burst-procs'], env.BENCH_BURST_PROCS, 5, 'burst-procs'));
  const burstClients = Math.max(
    1,
    positive(values['burst-clients'], env.BENCH_BURST_CLIENTS, 10, 'burst-clients'),
  );
  const densityN = positive(values.density, env.BENCH_DENSITY, q(1000, 100), 'density');
  const crunDensityN = positive(values['crun-density'], env.BENCH_CRUN_DENSITY, q(100, 20), 'crun-density');
  const podmanDensityN = positive(
    values['podman-density'],
    env.BENCH_PODMAN_DENSITY,
    q(50, 10),
    'podman-density',
  );
  const only = (values.only ?? env.BENCH_ONLY ?? RUNTIMES.join(',')).split(',').map((s) => s.trim());
  const solo = only.find((name) => name in SOLO);
  if (solo) {
    if (only.length > 1) throw new Error(`--only ${solo} runs alone`);
    return (await SOLO[solo]!()) ?? 0;
  }
  for (const name of only) {
    if (!(RUNTIMES as readonly string[]).includes(name))
      throw new Error(`--only: unknown runtime ${name} (${RUNTIMES.join(', ')})`);
  }
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root (namespaces, cgroups, mounts)');

  const repo = resolve(import.meta.dirname, '..');
  const templatesHome = env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';
  const template = await createTemplateStore({
    home: templatesHome,
    recipesDir: join(repo, 'templates'),
  }).get('base');
  const mountHelper = join(repo, 'agent', 'build', 'cove-mount');
  const machine = await describeMachine(repo);
  const date = new Date();

  const subjects: Subject[] = [];
  const finalizers: Array<() => Promise<string[]>> = [];
  const leftovers: string[] = [];
  const createSamples = new Map<string, Record<string, number>[]>();
  const rtSamples = new Map<string, number[]>();
  const shellSamples = new Map<string, number[]>();
  const writeSamples = new Map<string, number[]>();
  const readSamples = new Map<string, number[]>();
  const octetSamples = new Map<string, number[]>();
  /** The bench process's CPU per transfer, by scenario then runtime (ms). */
  const transferCpu = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, key: string, v: number) => m.set(key, [...(m.get(key) ?? []), v]);
  /** One transfer's ms, and the CPU this process (the in-process servers') spent meanwhile:
   * all its threads, and its main thread alone. */
  const withCpu = async (op: () => Promise<number>): Promise<[number, number, number]> => {
    const before = process.cpuUsage();
    const main = process.threadCpuUsage();
    const ms = await op();
    const used = process.cpuUsage(before);
    const usedMain = process.threadCpuUsage(main);
    return [ms, (used.user + used.system) / 1000, (usedMain.user + usedMain.system) / 1000];
  };
  // The file every runtime moves (random bytes, so nothing compresses it), and where copies
  // come back; removed at the end whatever happens.
  const scratch = await mkdtemp(join(tmpdir(), 'coveb-files-'));
  const subnet16 = env.BENCH_SUBNET ?? '10.13';
  const { coveBench } = await import('./cove.ts');
  type CoveBench = Awaited<ReturnType<typeof coveBench>>;
  let coldCove: CoveBench | undefined;
  let closeCold: (() => Promise<string[]>) | undefined;
  const density: DensityResult[] = [];
  const poolSamples = new Map<string, Record<string, number>[]>();
  let poolClaimsAtStart: { hits: number; misses: number } | undefined;
  let poolClaims: { hits: number; misses: number } | undefined;
  let poolConfig: { min: number; max: number; budget: number } | undefined;
  let burst:
    | (BurstResult & {
        poolBefore: Record<string, { ready: number; target: number }>;
        poolHits: number;
        poolMisses: number;
        leftAfterKill: number;
        leaks: string[];
      })
    | undefined;
  finalizers.push(async () => {
    await rm(scratch, { recursive: true, force: true });
    return [];
  });
  const file = join(scratch, 'file.bin');
  const fileBytes = filesMib * 2 ** 20;
  await writeFile(file, randomBytes(fileBytes));
  let stopping = false;
  const onSignal = () => {
    if (stopping) return;
    stopping = true;
    console.error('bench: interrupted; cleaning up after the current step');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const progress = (msg: string) => console.error(`bench: ${msg}`);
  let failed: unknown;

  try {
    // Sandbox makers first (each cleans up after itself in the finally below, even half-made).
    if (only.some((r) => r.startsWith('cove'))) {
      progress(`starting Cove (instance ${BENCH_INSTANCE})`);
      const cove = await coveBench({ templatesHome, subnet16, pool: false });
      coldCove = cove;
      closeCold = once(() => cove.close());
      finalizers.unshift(closeCold);
      subjects.push(...cove.subjects.filter((s) => only.includes(s.runtime)));
      const { curlSubject, e2bSubject } = await import('./e2b.ts');
      const e2bOpts = { url: cove.url, apiKey: cove.apiKey, manager: cove.manager, file, scratch };
      if (only.includes('cove-e2b')) subjects.push(e2bSubject(e2bOpts));
      if (only.includes('cove-curl')) subjects.push(await curlSubject(e2bOpts));
    }
    let sdkNull: Subject | undefined;
    if (only.includes('sdk-null')) {
      const { sdkNullSubject } = await import('./e2b.ts');
      subjects.push((sdkNull = await sdkNullSubject({ file, scratch })));
    }
    if (only.includes('crun')) {
      const { crunPeer } = await import('./crun.ts');
      subjects.push(
        await crunPeer({
          rootfs: template.rootfs,
          mountHelper,
          stateRoot: `/run/${BENCH_INSTANCE}-crun`,
          file,
          scratch,
        }),
      );
    }
    if (only.includes('podman')) {
      const { podmanPeer } = await import('./podman.ts');
      subjects.push(
        await podmanPeer({
          rootfs: template.rootfs,
          createRuns: podmanRuns,
          roundTripRuns: podmanRtRuns,
          file,
          scratch,
        }),
      );
    }

    // Interleaved, iteration by iteration: a noisy stretch of the machine hits every runtime.
    const creators = subjects.filter((s) => s.create !== undefined);
    const createRunsOf = (s: Subject) => s.createRuns ?? runs;
    progress(
      `create + first command: ${warmup} warm-up, then ${creators.map((s) => `${s.runtime} ×${createRunsOf(s)}`).join(', ')}`,
    );
    for (let i = 0; i < warmup && !stopping; i++) for (const s of creators) await s.create?.();
    for (let i = 0; i < Math.max(0, ...creators.map(createRunsOf)) && !stopping; i++) {
      for (const s of creators) {
        if (i >= createRunsOf(s) || stopping || !s.create) continue;
        const list = createSamples.get(s.runtime) ?? [];
        list.push(await s.create());
        createSamples.set(s.runtime, list);
      }
      if ((i + 1) % 10 === 0) progress(`  ${i + 1} creates`);
    }

    for (const s of subjects) if (!stopping) await s.startLong?.();
    const rtRunsOf = (s: Subject) => s.roundTripRuns ?? rtRuns;
    for (const [scenario, samples, step] of [
      [ROUND_TRIP, rtSamples, (s: Subject) => s.roundTrip?.bind(s)],
      [SHELL_ROUND_TRIP, shellSamples, (s: Subject) => s.shellRoundTrip?.bind(s)],
    ] as const) {
      const runners = subjects.filter((s) => step(s));
      progress(
        `${scenario}: ${warmup * 4} warm-up, then ${runners.map((s) => `${s.runtime} ×${rtRunsOf(s)}`).join(', ')}`,
      );
      for (let i = 0; i < warmup * 4 && !stopping; i++) for (const s of runners) await step(s)?.();
      for (let i = 0; i < Math.max(0, ...runners.map(rtRunsOf)) && !stopping; i++) {
        for (const s of runners) {
          const run = step(s);
          if (i >= rtRunsOf(s) || stopping || !run) continue;
          push(samples, s.runtime, await run());
        }
      }
    }

    const movers = subjects.filter((s) => s.transfer !== undefined);
    const moverWarmup = Math.min(warmup, 1);
    progress(
      `file transfer, ${filesMib} MiB: ${moverWarmup} warm-up, then write + read ×${filesRuns} for ${movers.map((s) => s.runtime).join(', ')}`,
    );
    for (let i = 0; i < moverWarmup + filesRuns && !stopping; i++) {
      for (const s of movers) {
        if (stopping || !s.transfer) continue;
        const t = s.transfer;
        const [w, wCpu, wMain] = await withCpu(() => t.write());
        const [o, oCpu, oMain] = t.writeOctet ? await withCpu(() => t.writeOctet!()) : [undefined, 0, 0];
        const [r, rCpu, rMain] = await withCpu(() => t.read());
        if (i < moverWarmup) continue;
        push(writeSamples, s.runtime, w);
        push(readSamples, s.runtime, r);
        push(transferCpu, `write|${s.runtime}`, wCpu);
        push(transferCpu, `write main|${s.runtime}`, wMain);
        push(transferCpu, `read|${s.runtime}`, rCpu);
        push(transferCpu, `read main|${s.runtime}`, rMain);
        if (o !== undefined) {
          push(octetSamples, s.runtime, o);
          push(transferCpu, `octet|${s.runtime}`, oCpu);
          push(transferCpu, `octet main|${s.runtime}`, oMain);
        }
      }
    }

    // Density, on the same Cove (pools off: every sandbox counted is one the manager lists).
    if (densityN > 0 && coldCove && !stopping) {
      const c = coldCove;
      progress(`density: ${densityN} idle Cove sandboxes at once, then true in each, then kill`);
      density.push(
        await coveDensity({
          manager: c.manager,
          n: densityN,
          cgroupParent: BENCH_INSTANCE,
          leaks: () => c.leaks(),
          progress,
        }),
      );
    }
    if (densityN > 0 && only.includes('crun') && crunDensityN > 0 && !stopping) {
      progress(`density: ${crunDensityN} idle crun containers`);
      density.push(
        await crunDensity({
          n: crunDensityN,
          rootfs: template.rootfs,
          mountHelper,
          stateRoot: `/run/${BENCH_INSTANCE}-crun`,
        }),
      );
    }
    if (densityN > 0 && only.includes('podman') && podmanDensityN > 0 && !stopping) {
      progress(`density: ${podmanDensityN} idle podman containers`);
      density.push(await podmanDensity({ n: podmanDensityN, rootfs: template.rootfs }));
    }

    // Pool hits and the burst: Cove started again on the same instance, with its pools on.
    const wantPool = only.includes('cove') || only.includes('cove-e2b');
    if ((wantPool || burstN > 0) && only.some((r) => r.startsWith('cove')) && !stopping) {
      for (const s of subjects.filter((x) => x.runtime.startsWith('cove')))
        leftovers.push(
          ...(await s.cleanup().catch((err: unknown) => [`${s.runtime} cleanup: ${String(err)}`])),
        );
      if (closeCold) leftovers.push(...(await closeCold()));
      progress(`starting Cove again (instance ${BENCH_INSTANCE}) with its warm pools on`);
      const cove = await coveBench({ templatesHome, subnet16, pool: true });
      finalizers.unshift(once(() => cove.close()));
      poolConfig = cove.pool;
      await cove.manager.pool.settled();
      const poolSubjects: Subject[] = [];
      const inProcess = cove.subjects.find((x) => x.runtime === 'cove');
      if (inProcess && only.includes('cove')) poolSubjects.push(inProcess);
      if (only.includes('cove-e2b')) {
        const { e2bSubject } = await import('./e2b.ts');
        const sdk = e2bSubject({ url: cove.url, apiKey: cove.apiKey, manager: cove.manager, file, scratch });
        finalizers.unshift(() => sdk.cleanup());
        poolSubjects.push(sdk);
      }
      // The SDK's floor in the same stretch of the run (its child is still up).
      if (sdkNull) poolSubjects.push(sdkNull);
      progress(
        `pool-hit create + first command: ${warmup} warm-up, then ×${poolRuns} for ${poolSubjects.map((x) => x.runtime).join(', ')} (the pool refilled between creates)`,
      );
      for (let i = 0; i < warmup + poolRuns && !stopping; i++) {
        if (i === warmup) poolClaimsAtStart = cove.claims();
        for (const x of poolSubjects) {
          await cove.manager.pool.settled();
          const sample = await x.create?.();
          if (sample && i >= warmup)
            poolSamples.set(x.runtime, [...(poolSamples.get(x.runtime) ?? []), sample]);
        }
      }
      const end = cove.claims();
      poolClaims = {
        hits: end.hits - (poolClaimsAtStart?.hits ?? 0),
        misses: end.misses - (poolClaimsAtStart?.misses ?? 0),
      };
      if (burstN > 0 && !stopping) {
        await cove.manager.pool.settled();
        const before = cove.claims();
        const poolBefore = cove.manager.pool.stats();
        progress(
          `burst: ${burstN} Sandbox.create() from ${burstProcs} processes × ${burstClients} SDK clients (pool ${JSON.stringify(poolBefore)})`,
        );
        const { runBurst } = await import('./burst.ts');
        const result = await runBurst({
          url: cove.url,
          apiKey: cove.apiKey,
          manager: cove.manager,
          creates: burstN,
          processes: burstProcs,
          clientsPerProcess: burstClients,
          progress,
        });
        const after = cove.claims();
        await cove.manager.pool.settled();
        burst = {
          ...result,
          poolBefore,
          poolHits: after.hits - before.hits,
          poolMisses: after.misses - before.misses,
          leftAfterKill: cove.manager.list().length,
          leaks: await cove.leaks(),
        };
      }
    }
  } catch (err) {
    failed = err;
  } finally {
    for (const s of subjects)
      leftovers.push(
        ...(await s.cleanup().catch((err: unknown) => [`${s.runtime} cleanup: ${String(err)}`])),
      );
    for (const f of finalizers)
      leftovers.push(...(await f().catch((err: unknown) => [`cleanup: ${String(err)}`])));
  }
  if (failed) {
    console.error('bench failed:', failed);
    if (leftovers.length) console.error(`bench: LEFT BEHIND: ${leftovers.join('; ')}`);
    return 1;
  }

  const rows: Row[] = [];
  const names = subjects.map((s) => s.runtime);
  for (const [scenario, phase] of CREATE_ROWS) {
    for (const runtime of names) {
      const values = (createSamples.get(runtime) ?? [])
        .map((s) => s[phase])
        .filter((v): v is number => v !== undefined);
      if (values.length) rows.push({ scenario, runtime, ...summarize(values), ratios: {} });
    }
  }
  for (const [scenario, samples] of [
    [ROUND_TRIP, rtSamples],
    [SHELL_ROUND_TRIP, shellSamples],
  ] as const) {
    for (const runtime of names) {
      const values = samples.get(runtime) ?? [];
      if (values.length) rows.push({ scenario, runtime, ...summarize(values), ratios: {} });
    }
  }
  for (const [scenario, phase] of [
    ['pool-hit create + first command', 'total'],
    ['  of which claim (create)', 'create'],
    ['  of which first command', 'first'],
  ] as const) {
    for (const [runtime, list] of poolSamples) {
      const values = list.map((x) => x[phase]).filter((v): v is number => v !== undefined);
      if (values.length) rows.push({ scenario, runtime, ...summarize(values), ratios: {} });
    }
  }
  const peers = PEERS.filter((p) => names.includes(p));
  for (const row of rows.filter((r) => r.runtime.startsWith('cove'))) {
    for (const peer of peers) {
      const scenario = row.scenario.startsWith('pool-hit ') ? 'create + first command' : row.scenario;
      const other = rows.find((r) => r.scenario === scenario && r.runtime === peer);
      if (other && (scenario === row.scenario || row.scenario.startsWith('pool-hit create')))
        row.ratios[peer] = row.p50 / other.p50;
    }
  }
  const rateRows: RateRow[] = [];
  for (const [scenario, samples, key] of [
    [`write ${filesMib} MiB`, writeSamples, 'write'],
    [`write ${filesMib} MiB, useOctetStream`, octetSamples, 'octet'],
    [`read ${filesMib} MiB`, readSamples, 'read'],
  ] as const) {
    for (const runtime of names) {
      const times = samples.get(runtime) ?? [];
      if (!times.length) continue;
      const rates = times.map((t) => fileBytes / 1e6 / (t / 1000)).sort((a, b) => a - b);
      const cpu = transferCpu.get(`${key}|${runtime}`) ?? [];
      const mainCpu = transferCpu.get(`${key} main|${runtime}`) ?? [];
      const servedHere = runtime.startsWith('cove') || runtime === 'sdk-null';
      rateRows.push({
        scenario,
        runtime,
        n: rates.length,
        p50: percentile(rates, 50),
        p10: percentile(rates, 10),
        min: rates[0] ?? Number.NaN,
        max: rates[rates.length - 1] ?? Number.NaN,
        p50ms: summarize(times).p50,
        ...(servedHere && cpu.length > 0 && { cpuMs: summarize(cpu).p50, mainCpuMs: summarize(mainCpu).p50 }),
        ratios: {},
      });
    }
  }
  for (const row of rateRows.filter((r) => r.runtime.startsWith('cove'))) {
    for (const peer of peers) {
      const other = rateRows.find((r) => r.scenario === row.scenario && r.runtime === peer);
      if (other) row.ratios[peer] = row.p50 / other.p50;
    }
  }

  const summary: SummaryRow[] = [];
  const row = (scenario: string, runtime: string) =>
    rows.find((r) => r.scenario === scenario && r.runtime === runtime);
  const f = (x: number) => `${ms(x)} ms`;
  const hitRate = poolClaims
    ? `pool hits ${poolClaims.hits}/${poolClaims.hits + poolClaims.misses}`
    : 'pool hits unknown';
  for (const [runtime, label] of [
    ['cove-e2b', 'e2b SDK'],
    ['cove', 'in-process'],
  ] as const) {
    const r = row('pool-hit create + first command', runtime);
    if (r)
      summary.push({
        scenario: `pool-hit create + first command, ${label}`,
        target: 'p50 < 10 ms, p99 < 50 ms',
        measured: `p50 ${f(r.p50)}, p99 ${f(r.p99)} (n ${r.n}, ${hitRate})`,
        verdict: r.p50 < 10 && r.p99 < 50 ? 'met' : 'missed',
        ratios: r.ratios,
      });
  }
  for (const [runtime, label] of [
    ['cove-e2b', 'e2b SDK'],
    ['cove', 'in-process'],
  ] as const) {
    const r = row('create + first command', runtime);
    if (r)
      summary.push({
        scenario: `cold create + first command, ${label}`,
        target: 'p50 < 60 ms',
        measured: `p50 ${f(r.p50)}, p99 ${f(r.p99)} (n ${r.n}, pools off)`,
        verdict: r.p50 < 60 ? 'met' : 'missed',
        ratios: r.ratios,
      });
  }
  // The e2b SDK targets beside what the SDK alone achieves against the null server (sdk-null).
  const shell = row(SHELL_ROUND_TRIP, 'cove-e2b');
  const shellNull = row(SHELL_ROUND_TRIP, 'sdk-null');
  const floorOf = (r: Row | RateRow | undefined, unit: string) =>
    r ? `; the SDK alone (null server): p50 ${unit === 'ms' ? f(r.p50) : `${r.p50.toFixed(0)} MB/s`}` : '';
  if (shell)
    summary.push({
      scenario: "`commands.run('true')` (bash -l -c true), e2b SDK",
      target: 'p50 < 5 ms',
      measured: `p50 ${f(shell.p50)}, p99 ${f(shell.p99)} (n ${shell.n})${floorOf(shellNull, 'ms')}`,
      verdict: shell.p50 < 5 ? 'met' : 'missed',
      ratios: shell.ratios,
    });
  for (const [dir, scenario, how] of [
    ['write', `write ${filesMib} MiB`, ''],
    ['write', `write ${filesMib} MiB, useOctetStream`, ' (`useOctetStream: true`)'],
    ['read', `read ${filesMib} MiB`, ''],
  ] as const) {
    const r = rateRows.find((x) => x.scenario === scenario && x.runtime === 'cove-e2b');
    const floor = rateRows.find((x) => x.scenario === scenario && x.runtime === 'sdk-null');
    if (r)
      summary.push({
        scenario: `files.${dir} ${filesMib} MiB, e2b SDK${how}`,
        target: '> 300 MB/s',
        measured: `p50 ${r.p50.toFixed(0)} MB/s (n ${r.n})${floorOf(floor, 'MB/s')}`,
        verdict: r.p50 > 300 ? 'met' : 'missed',
        ratios: {},
      });
  }
  // Cove's own capacity: curl (C, a few ms of CPU per transfer) leaves the server the cores the
  // SDK's JavaScript takes on this host, where client and server share two.
  for (const dir of ['write', 'read'] as const) {
    const r = rateRows.find((x) => x.scenario === `${dir} ${filesMib} MiB` && x.runtime === 'cove-curl');
    if (r)
      summary.push({
        scenario: `/files ${dir} ${filesMib} MiB, curl (the server's capacity)`,
        target: '> 300 MB/s',
        measured: `p50 ${r.p50.toFixed(0)} MB/s, p10 ${r.p10.toFixed(0)} (n ${r.n})`,
        verdict: r.p50 > 300 ? 'met' : 'missed',
        ratios: {},
      });
  }
  for (const [label, scenario] of [
    ['pool-hit', 'pool-hit create + first command'],
    ['cold', 'create + first command'],
  ] as const) {
    const r = row(scenario, 'sdk-null');
    if (r)
      summary.push({
        scenario: `${label} create + first command: the SDK alone against a null server`,
        target: '—',
        measured: `p50 ${f(r.p50)}, p99 ${f(r.p99)} (n ${r.n}): the floor under the e2b SDK rows`,
        verdict: 'n/a',
        ratios: {},
      });
  }
  const rt = row(ROUND_TRIP, 'cove');
  if (rt)
    summary.push({
      scenario: 'command round-trip (`true`), in-process',
      target: 'p50 < 3 ms',
      measured: `p50 ${f(rt.p50)}, p99 ${f(rt.p99)} (n ${rt.n})`,
      verdict: rt.p50 < 3 ? 'met' : 'missed',
      ratios: rt.ratios,
    });
  const rtSdk = row(ROUND_TRIP, 'cove-e2b');
  if (rtSdk)
    summary.push({
      scenario: 'command round-trip (`/usr/bin/true`), e2b SDK',
      target: '—',
      measured: `p50 ${f(rtSdk.p50)}, p99 ${f(rtSdk.p99)} (n ${rtSdk.n})`,
      verdict: 'n/a',
      ratios: rtSdk.ratios,
    });
  if (burst) {
    const b = burst;
    summary.push({
      scenario: `burst: ${b.creates} creates, ${b.processes}×${b.clientsPerProcess} SDK clients, pools on`,
      target: 'all succeed, none lost',
      measured:
        `${b.succeeded}/${b.creates} ok, ${b.failed} failed, ${b.retries429} × 429 retried, ${b.listed} listed; ` +
        `${(b.wallMs / 1000).toFixed(1)} s, ${b.createsPerSec.toFixed(1)}/s, p50 ${f(b.perCreate.p50)}, p99 ${f(b.perCreate.p99)}`,
      verdict: b.failed === 0 && b.succeeded === b.creates && b.listed === b.creates ? 'met' : 'missed',
      ratios: {},
    });
  }
  const dCove = density.find((d) => d.runtime === 'cove');
  if (dCove) {
    const ratios: SummaryRow['ratios'] = {};
    for (const peer of PEERS) {
      const d = density.find((x) => x.runtime === peer);
      if (d && d.hostKiBPer > 0) ratios[peer] = dCove.hostKiBPer / d.hostKiBPer;
    }
    summary.push({
      scenario: `density: ${dCove.target} idle sandboxes, then \`true\` in each`,
      target: '< 3 MiB host memory each, all answer',
      measured:
        `${dCove.alive} alive, ${(dCove.hostKiBPer / 1024).toFixed(2)} MiB host (cgroups ${((dCove.cgroupKiBPer ?? 0) / 1024).toFixed(2)}) + ${(dCove.serverRssKiBPer ?? 0).toFixed(0)} KiB Cove RSS each, ` +
        `${dCove.answered}/${dCove.alive} answered, ${dCove.leftovers.length ? 'LEFT: ' + dCove.leftovers.join('; ') : 'nothing left'}`,
      // A negative delta means the rest of the host freed more memory than the sandboxes took:
      // the figure measures nothing then, and the verdict says so.
      verdict:
        dCove.hostKiBPer <= 0
          ? 'n/a'
          : dCove.alive === dCove.target &&
              dCove.answered === dCove.alive &&
              dCove.hostKiBPer < 3 * 1024 &&
              !dCove.leftovers.length
            ? 'met'
            : 'missed',
      ratios,
    });
  }

  const header = [
    `Cove bench, ${date.toISOString()}, commit ${machine.commit}`,
    `machine: ${machine.host}, ${machine.cores} cores ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.os}, kernel ${machine.kernel}, cgroups ${machine.cgroups}`,
    `software: node ${machine.node}, ${machine.crun}, ${machine.runc}, ${machine.podman}`,
    `template: base ${template.hash}; warm-up ${warmup} creates / ${warmup * 4} round trips / ${Math.min(warmup, 1)} file write+read per runtime, discarded; runtimes interleaved; cold creates, round trips, files and density with Cove's pools off; pool-hit creates and the burst with them on (min ${poolConfig?.min ?? '—'}, max ${poolConfig?.max ?? '—'}, budget ${poolConfig?.budget ?? '—'}), the pool refilled (settled()) before each pool-hit create`,
    ...(quick
      ? [
          `QUICK MODE: ${runs} cold / ${poolRuns} pool-hit creates, burst ${burstN}, density ${densityN} (crun ${crunDensityN}, podman ${podmanDensityN}): not the issue's 1000s`,
        ]
      : []),
  ].join('\n');
  const notes = subjects.flatMap((s) => s.notes.map((n) => `${s.runtime}: ${n}`));
  console.log(`\n${header}\n\n${table(rows, peers)}\n`);
  if (rateRows.length) console.log(`${rateTable(rateRows, peers, filesMib)}\n`);
  if (burst) {
    const b = burst;
    console.log(
      `burst: ${b.creates} Sandbox.create() from ${b.processes} processes × ${b.clientsPerProcess} SDK clients: ` +
        `${b.succeeded} ok, ${b.failed} failed${b.errors.length ? ` (${b.errors.join(' | ')})` : ''}, ${b.retries429} HTTP 429 (retried by the SDK); ` +
        `${b.listed} listed after; ${(b.wallMs / 1000).toFixed(1)} s, ${b.createsPerSec.toFixed(1)} creates/s; per create p50 ${ms(b.perCreate.p50)} p90 ${ms(b.perCreate.p90)} p99 ${ms(b.perCreate.p99)} max ${ms(b.perCreate.max)} ms; ` +
        `pool before ${JSON.stringify(b.poolBefore)}, ${b.poolHits} claims hit the pool, ${b.poolMisses} built cold; ` +
        `kill of all: ${(b.killMs / 1000).toFixed(1)} s (${b.killFailures} failed), ${b.leftAfterKill} listed after, leaks: ${b.leaks.length ? b.leaks.join('; ') : 'none'}\n`,
    );
  }
  for (const d of density) {
    console.log(
      `density ${d.runtime}: ${d.alive}/${d.target} alive at once (created in ${(d.createMs / 1000).toFixed(1)} s, ${d.createFailures} failed); ` +
        `host memory ${(d.hostKiBPer / 1024).toFixed(2)} MiB each` +
        (d.cgroupKiBPer !== undefined
          ? ` (memory cgroup: ${(d.cgroupKiBPer / 1024).toFixed(2)} MiB each)`
          : '') +
        (d.serverRssKiBPer !== undefined ? `, Cove RSS +${d.serverRssKiBPer.toFixed(0)} KiB each` : '') +
        `; true answered ${d.answered}/${d.alive} in ${(d.answerMs / 1000).toFixed(1)} s; kill ${(d.killMs / 1000).toFixed(1)} s (${d.killFailures} failed); ` +
        `left: ${d.leftovers.length ? d.leftovers.join('; ') : 'nothing'}${d.errors.length ? `; errors: ${d.errors.join(' | ')}` : ''}`,
    );
  }
  if (summary.length) console.log(`\n${summaryTable(summary)}\n`);
  for (const n of notes) console.log(`- ${n}`);
  if (stopping) console.log('- INTERRUPTED: partial results');

  const dir = join(repo, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const stem = `${date.toISOString().slice(0, 10)}-${machine.host}`;
  let path = join(dir, `${stem}.json`);
  for (let k = 2; existsSync(path); k++) path = join(dir, `${stem}-${k}.json`);
  const samples = Object.fromEntries(
    names.map((n) => [
      n,
      {
        creates: createSamples.get(n) ?? [],
        roundTrips: rtSamples.get(n) ?? [],
        shellRoundTrips: shellSamples.get(n) ?? [],
        writesMs: writeSamples.get(n) ?? [],
        readsMs: readSamples.get(n) ?? [],
        poolHitCreates: poolSamples.get(n) ?? [],
      },
    ]),
  );
  const options = {
    runs,
    rtRuns,
    warmup,
    podmanRuns,
    podmanRtRuns,
    filesRuns,
    filesMib,
    quick,
    poolRuns,
    burst: burstN,
    burstProcs,
    burstClients,
    density: densityN,
    crunDensity: crunDensityN,
    podmanDensity: podmanDensityN,
    pool: poolConfig,
    only,
    templateHash: template.hash,
  };
  await writeFile(
    path,
    JSON.stringify(
      {
        date: date.toISOString(),
        machine,
        options,
        interrupted: stopping,
        summary,
        rows,
        rateRows,
        burst: burst && { ...burst, samples: undefined },
        density,
        poolClaims,
        notes,
        leftovers,
        samples: { ...samples, burstCreatesMs: burst?.samples ?? [] },
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nresults: ${path}`);
  if (leftovers.length) {
    console.error(`bench: LEFT BEHIND: ${leftovers.join('; ')}`);
    return 1;
  }
  console.log('cleanup: no containers, sandboxes, mounts or network namespaces left behind');
  if (!stopping && values.only === undefined && env.BENCH_ONLY === undefined)
    return (await import('./audit.ts')).auditMain([]);
  return stopping ? 130 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error('bench:', err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
