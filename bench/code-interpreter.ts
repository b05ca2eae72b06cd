// `node bench/code-interpreter.ts` (or `npm run bench -- --only code-interpreter`): the code
// interpreter's latencies (issue 7) through the unmodified `@e2b/code-interpreter` SDK, driven
// in a child process (this same file, forked) against a Cove the bench starts:
//   1. runCode('1+1') in a warm context (the default python context of a live sandbox);
//   2. Sandbox.create() + the first runCode('1+1') from a warm pool of code-interpreter-v1
//      (the pool refilled, settled(), before each create);
//   3. the same cold, on the same instance started again with its pools off.
// Times are taken in the child around the SDK calls alone. Needs root and the template
// (`bash scripts/setup.sh code-interpreter-v1`). See docs/benchmarks.md for the last result.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { coveBench, type CoveBench } from './cove.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { sh } from './sh.ts';
import { since, summarize, type Summary } from './stats.ts';
import type { Sandbox as CiSandbox } from '@e2b/code-interpreter';
import { markdownTable, ms } from './table.ts';
import { childClient, serveParent } from './ipc.ts';

const TEMPLATE = 'code-interpreter-v1';
const CODE = '1+1';

type Request = { op: 'startLong' } | { op: 'runCode' } | { op: 'create' } | { op: 'close' };
/** One create sample: Sandbox.create(), the first runCode after it, both, and the kill. */
type CreateSample = { total: number; create: number; first: number; kill: number };

// ---- the child: the SDK, in a process of its own ----------------------------------------

async function child(): Promise<void> {
  const { Sandbox } = await import('@e2b/code-interpreter');
  type Sbx = CiSandbox;
  let long: Sbx | undefined;

  async function run(sbx: Sbx): Promise<void> {
    const ex = await sbx.runCode(CODE);
    if (ex.error) throw new Error(`runCode: ${ex.error.name}: ${ex.error.value}`);
    if (ex.text !== '2') throw new Error(`runCode('${CODE}'): ${JSON.stringify(ex.text)}, not "2"`);
  }

  async function handle(req: Request): Promise<unknown> {
    switch (req.op) {
      case 'startLong':
        long = await Sandbox.create({ timeoutMs: 3600_000 });
        return long.sandboxId;
      case 'runCode': {
        if (!long) throw new Error('no long-lived sandbox');
        const start = performance.now();
        await run(long);
        return since(start);
      }
      case 'create': {
        const start = performance.now();
        const sbx = await Sandbox.create({ timeoutMs: 120_000 });
        try {
          const create = since(start);
          const runStart = performance.now();
          await run(sbx);
          const first = since(runStart);
          const total = since(start);
          const killStart = performance.now();
          await sbx.kill();
          return { total, create, first, kill: since(killStart) } satisfies CreateSample;
        } finally {
          await sbx.kill().catch(() => undefined);
        }
      }
      case 'close':
        if (long) await long.kill().catch(() => undefined);
        long = undefined;
        return null;
    }
  }

  serveParent(handle);
}

// ---- the parent: Cove, the child, the figures -------------------------------------------

interface SdkClient {
  ask<T>(req: Request): Promise<T>;
  close(): Promise<void>;
}

function sdkClient(cove: CoveBench): SdkClient {
  const proc: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    env: {
      ...process.env,
      BENCH_CODE_INTERPRETER_CHILD: '1',
      E2B_API_URL: cove.url,
      E2B_SANDBOX_URL: cove.url,
      E2B_API_KEY: cove.apiKey,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return childClient<Request>(proc, 'code-interpreter client', { op: 'close' });
}

export interface CodeInterpreterOptions {
  templatesHome: string;
  subnet16: string;
  /** runCode('1+1') in a warm context (after `warmup × 5` discarded). */
  runs: number;
  /** Pool-hit creates + first runCode (after `warmup` discarded). */
  poolRuns: number;
  /** Cold creates + first runCode (after one discarded). */
  coldRuns: number;
  warmup: number;
  progress: (msg: string) => void;
  /** Set when the run should stop early (a signal): the loops end, the cleanup runs. */
  stopping?: () => boolean;
}

export interface CodeInterpreterResult {
  runCode: Summary;
  poolHit: Record<keyof CreateSample, Summary>;
  cold: Record<keyof CreateSample, Summary>;
  pool: { min: number; max: number; budget: number; templates: string[] };
  poolClaims: { hits: number; misses: number };
  samples: { runCode: number[]; poolHit: CreateSample[]; cold: CreateSample[] };
  /** What the bench could not remove: empty when clean. */
  leftovers: string[];
}

const byPhase = (list: CreateSample[]) =>
  Object.fromEntries(
    (['total', 'create', 'first', 'kill'] as const).map((k) => [k, summarize(list.map((s) => s[k]))]),
  ) as Record<keyof CreateSample, Summary>;

/** Network namespaces of the bench's instance still on the host. */
async function netnsLeft(): Promise<string[]> {
  return (await sh('ip', ['netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((l) => l.startsWith(`${BENCH_INSTANCE}-`));
}

export async function codeInterpreterBench(opts: CodeInterpreterOptions): Promise<CodeInterpreterResult> {
  const { templatesHome, subnet16, progress } = opts;
  const stopping = opts.stopping ?? (() => false);
  if (!existsSync(join(templatesHome, 'templates', TEMPLATE, 'current')))
    throw new Error(`template ${TEMPLATE} not built: bash scripts/setup.sh ${TEMPLATE}`);
  // The pool on for code-interpreter-v1 (loadConfig reads COVE_POOL_* when coveBench starts).
  process.env.COVE_POOL_TEMPLATES ??= TEMPLATE;
  const poolTemplates = process.env.COVE_POOL_TEMPLATES.split(',');
  if (!poolTemplates.includes(TEMPLATE)) throw new Error(`COVE_POOL_TEMPLATES must include ${TEMPLATE}`);
  if (Number(process.env.COVE_POOL_MIN ?? 2) < 2) throw new Error('COVE_POOL_MIN: at least 2');

  const runCode: number[] = [];
  const poolHit: CreateSample[] = [];
  const cold: CreateSample[] = [];
  const leftovers: string[] = [];
  let pool = { min: 0, max: 0, budget: 0 };
  let poolClaims = { hits: 0, misses: 0 };

  async function withCove(poolOn: boolean, body: (cove: CoveBench, sdk: SdkClient) => Promise<void>) {
    progress(`starting Cove (instance ${BENCH_INSTANCE}, pools ${poolOn ? 'on' : 'off'})`);
    const cove = await coveBench({ templatesHome, subnet16, pool: poolOn });
    let sdk: SdkClient | undefined;
    try {
      sdk = sdkClient(cove);
      await body(cove, sdk);
    } finally {
      await sdk?.close();
      leftovers.push(...(await cove.close()));
    }
  }

  // Pools on: the warm context, then pool-hit creates.
  await withCove(true, async (cove, sdk) => {
    pool = cove.pool;
    progress(`filling the pool (${JSON.stringify(pool)}, templates ${poolTemplates.join(',')})`);
    await cove.manager.pool.settled();
    await sdk.ask({ op: 'startLong' });
    // That create took a pooled sandbox: let its replacement finish before timing runCode.
    await cove.manager.pool.settled();
    progress(`runCode('${CODE}') in a warm context: ${opts.warmup * 5} warm-up, then ×${opts.runs}`);
    for (let i = 0; i < opts.warmup * 5 + opts.runs && !stopping(); i++) {
      const ms = await sdk.ask<number>({ op: 'runCode' });
      if (i >= opts.warmup * 5) runCode.push(ms);
    }
    await sdk.ask({ op: 'close' });
    progress(
      `pool-hit Sandbox.create() + first runCode: ${opts.warmup} warm-up, then ×${opts.poolRuns} (the pool refilled before each)`,
    );
    let atStart = cove.claims();
    for (let i = 0; i < opts.warmup + opts.poolRuns && !stopping(); i++) {
      if (i === opts.warmup) atStart = cove.claims();
      await cove.manager.pool.settled();
      const sample = await sdk.ask<CreateSample>({ op: 'create' });
      if (i >= opts.warmup) poolHit.push(sample);
    }
    const end = cove.claims();
    poolClaims = { hits: end.hits - atStart.hits, misses: end.misses - atStart.misses };
  });

  // Pools off: every create builds the sandbox, starts the server and its kernels.
  if (!stopping())
    await withCove(false, async (_cove, sdk) => {
      progress(`cold Sandbox.create() + first runCode: 1 warm-up, then ×${opts.coldRuns}`);
      for (let i = 0; i < 1 + opts.coldRuns && !stopping(); i++) {
        const sample = await sdk.ask<CreateSample>({ op: 'create' });
        if (i >= 1) cold.push(sample);
      }
    });

  const netns = await netnsLeft();
  if (netns.length) leftovers.push(`network namespaces: ${netns.join(' ')}`);
  return {
    runCode: summarize(runCode),
    poolHit: byPhase(poolHit),
    cold: byPhase(cold),
    pool: { ...pool, templates: poolTemplates },
    poolClaims,
    samples: { runCode, poolHit, cold },
    leftovers,
  };
}

const f = (x: number) => (!Number.isFinite(x) ? '—' : x < 10 ? `${x.toFixed(2)} ms` : `${x.toFixed(1)} ms`);

/** The table and the verdicts against issue 7's targets, as printed (Markdown). */
export function codeInterpreterReport(r: CodeInterpreterResult): string {
  const rows: [string, Summary][] = [
    [`runCode('${CODE}'), warm context`, r.runCode],
    ['pool-hit create + first runCode', r.poolHit.total],
    ['↳ of which Sandbox.create()', r.poolHit.create],
    ['↳ of which first runCode', r.poolHit.first],
    ['cold create + first runCode', r.cold.total],
    ['↳ of which Sandbox.create()', r.cold.create],
    ['↳ of which first runCode', r.cold.first],
  ];
  const head = ['scenario', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'mean ms', 'min ms', 'max ms'];
  const body = rows.map(([s, m]) => [
    s,
    String(m.n),
    ms(m.p50),
    ms(m.p90),
    ms(m.p99),
    ms(m.mean),
    ms(m.min),
    ms(m.max),
  ]);
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  const hits = `pool hits ${r.poolClaims.hits}/${r.poolClaims.hits + r.poolClaims.misses}`;
  return [
    markdownTable(head, body, 1),
    '',
    `- runCode('${CODE}') under 15 ms p50: p50 ${f(r.runCode.p50)}, p99 ${f(r.runCode.p99)} (n ${r.runCode.n}): ${verdict(r.runCode.p50 < 15)}`,
    `- first runCode after create under 300 ms p50, warm pool: create + first runCode p50 ${f(r.poolHit.total.p50)}, p99 ${f(r.poolHit.total.p99)} (first runCode alone p50 ${f(r.poolHit.first.p50)}; n ${r.poolHit.total.n}, ${hits}): ${verdict(r.poolHit.total.p50 < 300)}`,
    `- cold (pools off), no target: create + first runCode p50 ${f(r.cold.total.p50)}, p99 ${f(r.cold.total.p99)} (n ${r.cold.total.n})`,
  ].join('\n');
}

function count(flag: string | undefined, env: string | undefined, fallback: number, name: string): number {
  const raw = flag ?? env;
  if (raw === undefined || raw === '') return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < 0) throw new Error(`${name}: expected a whole number, got ${raw}`);
  return v;
}

const HELP = `usage: node bench/code-interpreter.ts [options]   (as root; each option also reads an environment variable)
  --runs N        runCode('1+1') in a warm context          BENCH_CI_RUNS      (200)
  --pool-runs N   pool-hit create + first runCode           BENCH_CI_POOL_RUNS (30)
  --cold-runs N   cold create + first runCode (pools off)   BENCH_CI_COLD_RUNS (5)
  --warmup N      discarded creates (runCode: 5N)           BENCH_CI_WARMUP    (2)
Environment: COVE_TEMPLATES_HOME (/var/lib/cove), BENCH_INSTANCE (coveb), BENCH_SUBNET (10.13),
COVE_POOL_TEMPLATES (code-interpreter-v1), COVE_POOL_MIN (2, at least 2), COVE_LOG_LEVEL (warn).`;

/** The command line: runs the bench, prints the report, writes bench/results/…-code-interpreter.json. */
export async function codeInterpreterMain(argv: string[] = process.argv.slice(2)): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' },
      'pool-runs': { type: 'string' },
      'cold-runs': { type: 'string' },
      warmup: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const env = process.env;
  const repo = resolve(import.meta.dirname, '..');
  let stop = false;
  const onSignal = () => {
    stop = true;
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const machine = await describeMachine(repo);
  const date = new Date();
  const result = await codeInterpreterBench({
    templatesHome: env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    subnet16: env.BENCH_SUBNET ?? '10.13',
    runs: count(values.runs, env.BENCH_CI_RUNS, 200, 'runs'),
    poolRuns: count(values['pool-runs'], env.BENCH_CI_POOL_RUNS, 30, 'pool-runs'),
    coldRuns: count(values['cold-runs'], env.BENCH_CI_COLD_RUNS, 5, 'cold-runs'),
    warmup: count(values.warmup, env.BENCH_CI_WARMUP, 2, 'warmup'),
    progress: (msg) => console.error(`bench: ${msg}`),
    stopping: () => stop,
  });
  console.log(
    `\nCove code-interpreter bench, ${date.toISOString()}, commit ${machine.commit}, ${machine.host} (${machine.cores} × ${machine.cpuModel}, ${machine.memoryGiB} GiB, ${machine.kernel}, Node ${machine.node}, ${machine.crun})`,
  );
  console.log(
    `@e2b/code-interpreter SDK in a child process; template ${TEMPLATE}; pool ${JSON.stringify(result.pool)}\n`,
  );
  console.log(codeInterpreterReport(result));
  if (stop) console.log('- INTERRUPTED: partial results');
  const dir = join(repo, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${date.toISOString().slice(0, 10)}-${machine.host}-code-interpreter.json`);
  await writeFile(path, JSON.stringify({ date: date.toISOString(), machine, ...result }, null, 2) + '\n');
  console.log(`\nresults: ${path}`);
  if (result.leftovers.length) {
    console.error(`bench: left on the host: ${result.leftovers.join('; ')}`);
    return 1;
  }
  return stop ? 130 : 0;
}

if (process.env.BENCH_CODE_INTERPRETER_CHILD === '1') {
  void child();
} else if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  codeInterpreterMain().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
