// `npm run bench`: Cove's create and exec latencies and file throughput, in process, over
// HTTP and through the e2b SDK, beside crun and podman, measured in the same run on the same
// machine. See docs/benchmarks.md for the targets and the last result.
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

const HELP = `usage: npm run bench -- [options]   (each option also reads an environment variable)
  --runs N          creates per runtime, after warm-up            BENCH_RUNS      (50)
  --rt-runs N       command round trips per runtime               BENCH_RT_RUNS   (200)
  --warmup N        discarded creates per runtime (round trips: 4N) BENCH_WARMUP  (5)
  --podman-runs N   creates for podman (slow)                     BENCH_PODMAN_RUNS (= --runs)
  --podman-rt-runs N round trips for podman                       BENCH_PODMAN_RT_RUNS (= --rt-runs)
  --files-runs N    writes and reads of the file per runtime      BENCH_FILES_RUNS (10)
  --files-mib N     size of the file moved, MiB                   BENCH_FILES_MIB (64)
  --pool            keep Cove's warm pool (COVE_POOL_*): creates   BENCH_POOL      (off: cold)
                    claim a ready sandbox instead of building one
  --only LIST       comma-separated: cove,cove-http,cove-e2b,cove-curl,crun,podman  BENCH_ONLY (all)
Environment: COVE_TEMPLATES_HOME (/var/lib/cove), BENCH_SUBNET (10.13), COVE_LOG_LEVEL (warn).`;

const RUNTIMES = ['cove', 'cove-http', 'cove-e2b', 'cove-curl', 'crun', 'podman'] as const;
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
  /** Cove's MB/s p50 divided by each peer's (above 1: Cove is faster). */
  ratios: Partial<Record<(typeof PEERS)[number], number>>;
}

interface Row extends Summary {
  scenario: string;
  runtime: string;
  /** Cove's p50 divided by each peer's p50 in the same scenario (Cove rows only). */
  ratios: Partial<Record<(typeof PEERS)[number], number>>;
}

function positive(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}: expected a whole number, got ${raw}`);
  return n;
}

function ms(x: number): string {
  if (!Number.isFinite(x)) return '—';
  return x < 10 ? x.toFixed(2) : x.toFixed(1);
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
    ...peers.map((p) => {
      const ratio = r.ratios[p as (typeof PEERS)[number]];
      return ratio === undefined ? '' : `${ratio.toFixed(2)}×`;
    }),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) =>
    '| ' +
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ') +
    ' |';
  const rule =
    '| ' + widths.map((w, i) => (i < 2 ? '-'.repeat(w) : '-'.repeat(w - 1) + ':')).join(' | ') + ' |';
  return [line(head), rule, ...body.map(line)].join('\n');
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
    ...peers.map((p) => {
      const ratio = r.ratios[p as (typeof PEERS)[number]];
      return ratio === undefined ? '' : `${ratio.toFixed(2)}×`;
    }),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] ?? '').length)));
  const line = (cells: string[]) =>
    '| ' +
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ') +
    ' |';
  const rule =
    '| ' + widths.map((w, i) => (i < 2 ? '-'.repeat(w) : '-'.repeat(w - 1) + ':')).join(' | ') + ' |';
  return [line(head), rule, ...body.map(line)].join('\n');
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
      pool: { type: 'boolean' },
      only: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const env = process.env;
  const runs = positive(values.runs, env.BENCH_RUNS, 50, 'runs');
  const rtRuns = positive(values['rt-runs'], env.BENCH_RT_RUNS, 200, 'rt-runs');
  const warmup = positive(values.warmup, env.BENCH_WARMUP, 5, 'warmup');
  const podmanRuns = positive(values['podman-runs'], env.BENCH_PODMAN_RUNS, runs, 'podman-runs');
  const podmanRtRuns = positive(values['podman-rt-runs'], env.BENCH_PODMAN_RT_RUNS, rtRuns, 'podman-rt-runs');
  const filesRuns = positive(values['files-runs'], env.BENCH_FILES_RUNS, 10, 'files-runs');
  const filesMib = positive(values['files-mib'], env.BENCH_FILES_MIB, 64, 'files-mib');
  const pool = values.pool === true || env.BENCH_POOL === '1';
  const only = (values.only ?? env.BENCH_ONLY ?? RUNTIMES.join(',')).split(',').map((s) => s.trim());
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
  const push = (m: Map<string, number[]>, key: string, v: number) => m.set(key, [...(m.get(key) ?? []), v]);
  // The file every runtime moves (random bytes, so nothing compresses it), and where copies
  // come back; removed at the end whatever happens.
  const scratch = await mkdtemp(join(tmpdir(), 'coveb-files-'));
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
      progress('starting Cove (instance coveb)');
      const { coveBench } = await import('./cove.ts');
      const cove = await coveBench({ templatesHome, subnet16: env.BENCH_SUBNET ?? '10.13', pool });
      finalizers.unshift(() => cove.close());
      subjects.push(...cove.subjects.filter((s) => only.includes(s.runtime)));
      const { curlSubject, e2bSubject } = await import('./e2b.ts');
      const e2bOpts = { url: cove.url, apiKey: cove.apiKey, manager: cove.manager, file, scratch };
      if (only.includes('cove-e2b')) subjects.push(e2bSubject(e2bOpts));
      if (only.includes('cove-curl')) subjects.push(await curlSubject(e2bOpts));
    }
    if (only.includes('crun')) {
      const { crunPeer } = await import('./crun.ts');
      subjects.push(
        await crunPeer({ rootfs: template.rootfs, mountHelper, stateRoot: '/run/coveb-crun', file, scratch }),
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
        const w = await s.transfer.write();
        const r = await s.transfer.read();
        if (i < moverWarmup) continue;
        push(writeSamples, s.runtime, w);
        push(readSamples, s.runtime, r);
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
  const peers = PEERS.filter((p) => names.includes(p));
  for (const row of rows.filter((r) => r.runtime.startsWith('cove'))) {
    for (const peer of peers) {
      const other = rows.find((r) => r.scenario === row.scenario && r.runtime === peer);
      if (other) row.ratios[peer] = row.p50 / other.p50;
    }
  }
  const rateRows: RateRow[] = [];
  for (const [scenario, samples] of [
    [`write ${filesMib} MiB`, writeSamples],
    [`read ${filesMib} MiB`, readSamples],
  ] as const) {
    for (const runtime of names) {
      const times = samples.get(runtime) ?? [];
      if (!times.length) continue;
      const rates = times.map((t) => fileBytes / 1e6 / (t / 1000)).sort((a, b) => a - b);
      rateRows.push({
        scenario,
        runtime,
        n: rates.length,
        p50: percentile(rates, 50),
        p10: percentile(rates, 10),
        min: rates[0] ?? Number.NaN,
        max: rates[rates.length - 1] ?? Number.NaN,
        p50ms: summarize(times).p50,
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

  const header = [
    `Cove bench, ${date.toISOString()}, commit ${machine.commit}`,
    `machine: ${machine.host}, ${machine.cores} cores ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.os}, kernel ${machine.kernel}, cgroups ${machine.cgroups}`,
    `software: node ${machine.node}, ${machine.crun}, ${machine.runc}, ${machine.podman}`,
    `template: base ${template.hash}; warm-up ${warmup} creates / ${warmup * 4} round trips / ${Math.min(warmup, 1)} file write+read per runtime, discarded; runtimes interleaved; Cove's warm pool ${pool ? 'ON (creates claim ready sandboxes)' : 'off (cold creates)'}`,
  ].join('\n');
  const notes = subjects.flatMap((s) => s.notes.map((n) => `${s.runtime}: ${n}`));
  console.log(`\n${header}\n\n${table(rows, peers)}\n`);
  if (rateRows.length) console.log(`${rateTable(rateRows, peers, filesMib)}\n`);
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
    pool,
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
        rows,
        rateRows,
        notes,
        leftovers,
        samples,
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
  return stopping ? 130 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error('bench:', err instanceof Error ? err.message : err);
    process.exit(1);
  },
);
