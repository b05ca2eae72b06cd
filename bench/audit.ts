// `npm run bench -- --only audit` (and the end of a full `npm run bench`): what the audit
// trail costs (issue 15). The same scenarios on a Cove with the audit trail on (the default)
// and off (COVE_AUDIT=off), in alternating phases (on, off, off, on, ...) so that a noisy
// stretch of the shared machine hits both alike:
//   - command round trip: `true` in a live sandbox through the manager (process.start and
//     process.end are recorded: the most sensitive case, the smallest base);
//   - the same over HTTP (POST /cove/v1/sandboxes/:id/exec: an `api` record as well);
//   - create + first command, in process and over HTTP (sandbox.create, the API call, the
//     command's two records; kill timed apart).
// Pools are off: every create is cold. Goal: within 5 % (p50).
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { coveBench } from './cove.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { summarize, type Summary } from './stats.ts';
import type { Subject } from './subject.ts';
import { markdownTable, ms } from './table.ts';

type Mode = 'on' | 'off';
const SCENARIOS = ['command round-trip', 'create + first command', '  of which create'] as const;

interface Row {
  scenario: string;
  runtime: string;
  on: Summary;
  off: Summary;
  /** (on p50 / off p50) - 1, in percent. */
  overheadPct: number;
}

function report(rows: Row[]): string {
  return markdownTable(
    ['scenario', 'runtime', 'audit on p50', 'p90', 'audit off p50', 'p90', 'n (each)', 'cost p50'],
    rows.map((r) => [
      r.scenario,
      r.runtime,
      ms(r.on.p50),
      ms(r.on.p90),
      ms(r.off.p50),
      ms(r.off.p90),
      String(Math.min(r.on.n, r.off.n)),
      `${r.overheadPct >= 0 ? '+' : ''}${r.overheadPct.toFixed(1)} %`,
    ]),
    2,
  );
}

export async function auditMain(argv: string[] = process.argv.slice(2)): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      phases: { type: 'string' },
      'rt-runs': { type: 'string' },
      runs: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(`usage: npm run bench -- --only audit   (BENCH_AUDIT_PHASES 4, BENCH_AUDIT_RT_RUNS 400, BENCH_AUDIT_RUNS 30:
  phases alternate on/off; round trips and creates are totals per mode and runtime, split over the phases)`);
    return 0;
  }
  const env = process.env;
  const num = (v: string | undefined, e: string | undefined, d: number) => Number(v ?? e ?? d);
  const phases = Math.max(2, num(values.phases, env.BENCH_AUDIT_PHASES, 4));
  const rtRuns = num(values['rt-runs'], env.BENCH_AUDIT_RT_RUNS, 400);
  const runs = num(values.runs, env.BENCH_AUDIT_RUNS, 30);
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root (namespaces, cgroups, mounts)');
  const repo = resolve(import.meta.dirname, '..');
  const templatesHome = env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';
  const date = new Date();
  const machine = await describeMachine(repo);

  const samples = new Map<string, number[]>(); // `${mode} ${runtime} ${scenario}`
  const add = (mode: Mode, runtime: string, scenario: string, v: number) => {
    const key = `${mode} ${runtime} ${scenario}`;
    samples.set(key, [...(samples.get(key) ?? []), v]);
  };
  const perPhase = (total: number) => Math.max(1, Math.round(total / (phases / 2)));

  for (let p = 0; p < phases; p++) {
    // on, off, off, on, on, off ...: neither mode always runs first after a start.
    const mode: Mode = p % 4 === 0 || p % 4 === 3 ? 'on' : 'off';
    console.log(`phase ${p + 1}/${phases}: audit ${mode} (instance ${BENCH_INSTANCE})`);
    const cove = await coveBench({
      templatesHome,
      subnet16: env.BENCH_SUBNET ?? '10.13',
      pool: false,
      audit: mode === 'on',
    });
    try {
      const subjects: Subject[] = cove.subjects.filter(
        (s) => s.runtime === 'cove' || s.runtime === 'cove-http',
      );
      for (const s of subjects) await s.startLong?.();
      for (let i = 0; i < 40; i++) for (const s of subjects) await s.roundTrip?.(); // warm-up
      for (let i = 0; i < perPhase(rtRuns); i++)
        for (const s of subjects) add(mode, s.runtime, SCENARIOS[0], await s.roundTrip!());
      for (let i = 0; i < 2; i++) for (const s of subjects) await s.create?.(); // warm-up
      for (let i = 0; i < perPhase(runs); i++)
        for (const s of subjects) {
          const r = await s.create!();
          add(mode, s.runtime, SCENARIOS[1], r.total!);
          add(mode, s.runtime, SCENARIOS[2], r.create!);
        }
    } finally {
      const left = await cove.close();
      if (left.length) console.error(`bench: left behind: ${left.join('; ')}`);
    }
  }

  const rows: Row[] = [];
  for (const scenario of SCENARIOS)
    for (const runtime of ['cove', 'cove-http']) {
      const on = summarize(samples.get(`on ${runtime} ${scenario}`) ?? []);
      const off = summarize(samples.get(`off ${runtime} ${scenario}`) ?? []);
      rows.push({ scenario, runtime, on, off, overheadPct: (on.p50 / off.p50 - 1) * 100 });
    }
  console.log(`\n## The cost of the audit trail (issue 15)\n`);
  console.log(`${date.toISOString()} on ${machine.host}; ${phases} alternating phases, pools off\n`);
  console.log(report(rows));
  const dir = join(repo, 'bench', 'results');
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${date.toISOString().slice(0, 10)}-${machine.host}-audit.json`);
  await writeFile(
    path,
    JSON.stringify(
      { date: date.toISOString(), machine, phases, rtRuns, runs, rows, samples: Object.fromEntries(samples) },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nresults: ${path}`);
  return 0;
}

if (import.meta.main) {
  auditMain().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error('bench:', err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
