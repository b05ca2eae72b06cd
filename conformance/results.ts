import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

export type Outcome = 'passed' | 'failed' | 'skipped';

export interface TestResult {
  /** `<file> > <describe> > <test>`, file relative to upstream tests/. */
  id: string;
  file: string;
  outcome: Outcome;
  message?: string;
  durationMs?: number;
}

/** One SDK version's expected failures: test id → why it fails. */
export type Expected = Record<string, string>;

/** The expected-failures file: SDK version → its expected failures. */
export type ExpectedFile = Record<string, Expected>;

/** A reason starting with this accepts either outcome (use for timing-dependent tests only). */
export const FLAKY = 'FLAKY:';

interface VitestJson {
  testResults: Array<{
    name: string;
    status: string;
    message?: string;
    assertionResults: Array<{
      ancestorTitles: string[];
      title: string;
      status: string;
      duration?: number | null;
      failureMessages?: string[];
    }>;
  }>;
}

/** Reads vitest's JSON report. A file that failed outside its tests becomes `<file> > (file)`. */
export function readVitestJson(path: string, testsDir: string): TestResult[] {
  const json = JSON.parse(readFileSync(path, 'utf8')) as VitestJson;
  const results: TestResult[] = [];
  const seen = new Map<string, number>();
  for (const f of json.testResults) {
    const file = relative(testsDir, f.name).split('\\').join('/');
    for (const a of f.assertionResults) {
      const outcome: Outcome =
        a.status === 'passed' ? 'passed' : a.status === 'failed' ? 'failed' : 'skipped';
      // Upstream repeats a few names in one file: the second is `<name> (2)`.
      const base = [file, ...a.ancestorTitles, a.title].join(' > ');
      const n = (seen.get(base) ?? 0) + 1;
      seen.set(base, n);
      results.push({
        id: n === 1 ? base : `${base} (${n})`,
        file,
        outcome,
        ...(outcome === 'failed' && { message: (a.failureMessages ?? []).join('\n') }),
        ...(a.duration != null && { durationMs: Math.round(a.duration) }),
      });
    }
    if (f.status === 'failed' && f.message)
      results.push({ id: `${file} > (file)`, file, outcome: 'failed', message: f.message });
  }
  return results;
}

export interface Verdict {
  unexpected: TestResult[];
  /** Expected failures that passed, whose test is gone from a file that ran, or (in a run of
   * every file) whose file did not run at all. */
  stale: Array<{ id: string; reason: string; why: 'passed' | 'not found' | 'file not run' }>;
  flakyPassed: string[];
}

/** `ranFiles`: the files this run executed; `full`: whether that was every file the plan runs. */
export function compare(
  results: TestResult[],
  expected: Expected,
  ranFiles: Set<string>,
  full: boolean,
): Verdict {
  const byId = new Map(results.map((r) => [r.id, r]));
  const verdict: Verdict = { unexpected: [], stale: [], flakyPassed: [] };
  for (const r of results) if (r.outcome === 'failed' && !(r.id in expected)) verdict.unexpected.push(r);
  for (const [id, reason] of Object.entries(expected)) {
    const file = id.split(' > ')[0]!;
    if (!ranFiles.has(file)) {
      if (full) verdict.stale.push({ id, reason, why: 'file not run' });
      continue;
    }
    const r = byId.get(id);
    if (!r) verdict.stale.push({ id, reason, why: 'not found' });
    else if (r.outcome === 'passed') {
      if (reason.startsWith(FLAKY)) verdict.flakyPassed.push(id);
      else verdict.stale.push({ id, reason, why: 'passed' });
    }
  }
  return verdict;
}

/** The expected failures after this run: failures of the files that ran, reasons kept. */
export function updated(
  results: TestResult[],
  expected: Expected,
  ranFiles: Set<string>,
  full: boolean,
): Expected {
  const next: Expected = {};
  const seen = new Set(results.map((r) => r.id));
  for (const [id, reason] of Object.entries(expected)) {
    if (!ranFiles.has(id.split(' > ')[0]!)) {
      if (!full) next[id] = reason;
    } else if (reason.startsWith(FLAKY) && seen.has(id)) next[id] = reason;
  }
  for (const r of results) if (r.outcome === 'failed') next[r.id] = expected[r.id] ?? 'TODO: triage';
  return Object.fromEntries(Object.entries(next).sort(([a], [b]) => a.localeCompare(b)));
}

export interface Counts {
  passed: number;
  failed: number;
  skipped: number;
  expected: number;
}

function count(results: TestResult[], expected: Expected): Counts {
  const c: Counts = { passed: 0, failed: 0, skipped: 0, expected: 0 };
  for (const r of results) {
    c[r.outcome]++;
    if (r.outcome === 'failed' && r.id in expected) c.expected++;
  }
  return c;
}

/** The area of a test file: its folder (api, sandbox, sandbox/files, ...). */
export function areaOf(file: string): string {
  const i = file.lastIndexOf('/');
  return i < 0 ? '.' : file.slice(0, i);
}

export function tally(results: TestResult[], expected: Expected, key: (r: TestResult) => string) {
  const groups = new Map<string, TestResult[]>();
  for (const r of results) groups.set(key(r), [...(groups.get(key(r)) ?? []), r]);
  return new Map(
    [...groups.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, rs]) => [k, count(rs, expected)]),
  );
}

/** A plain-text table: name, passed, failed (of which expected), skipped. */
export function table(title: string, rows: Map<string, Counts>): string {
  const all = [...rows.values()].reduce(
    (t, c) => ({
      passed: t.passed + c.passed,
      failed: t.failed + c.failed,
      skipped: t.skipped + c.skipped,
      expected: t.expected + c.expected,
    }),
    { passed: 0, failed: 0, skipped: 0, expected: 0 },
  );
  const lines = [...rows.entries(), ['total', all] as const];
  const width = Math.max(title.length, ...lines.map(([k]) => k.length));
  const head = `${title.padEnd(width)}  passed  failed (expected)  skipped`;
  const fmt = ([k, c]: readonly [string, Counts]) =>
    `${k.padEnd(width)}  ${String(c.passed).padStart(6)}  ${String(c.failed).padStart(6)} ${`(${c.expected})`.padStart(10)}  ${String(c.skipped).padStart(7)}`;
  return [
    head,
    '-'.repeat(head.length),
    ...lines.slice(0, -1).map(fmt),
    '-'.repeat(head.length),
    fmt(lines.at(-1)!),
  ].join('\n');
}

/** The first line of a failure that says what went wrong. */
export function firstLine(message = ''): string {
  return (message.split('\n').find((l) => l.trim() && !l.trim().startsWith('at ')) ?? '')
    .trim()
    .slice(0, 200);
}
