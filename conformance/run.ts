/**
 * Runs E2B's own JS SDK tests (from a local copy of the E2B repository) against a Cove server
 * started for the run, with the `e2b` npm package of one version, and compares the failures
 * with conformance/expected-failures.json. See conformance/README.md.
 *
 *   node conformance/run.ts [--sdk 2.51.0] [--update] [--only <text>]... [--workers N] [--keep]
 *                           [--verbose] [--no-setup] [--summary <file.json>] [--cove <checkout>] [--ref <commit>]
 *                           [--http]
 */
import { execFileSync, spawn } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  createWriteStream,
} from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  cleanup,
  onCleanup,
  removeNetwork,
  removeTemplates,
  templatesBuiltIn,
  trapSignals,
} from './cleanup.ts';
import { defaultRoot, INSTANCE, startServer, SUBNET, TEMPLATES_HOME, type Server } from './cove.ts';
import { ensureTemplate, startRegistry } from './stand-ins.ts';
import { classify } from './plan.ts';
import {
  analyze,
  extractTests,
  helperFile,
  installSdk,
  listTestFiles,
  rewriteImports,
  runtimeExports,
  type Analysis,
} from './prepare.ts';
import {
  areaOf,
  compare,
  firstLine,
  readVitestJson,
  table,
  tally,
  updated,
  type ExpectedFile,
  type TestResult,
} from './results.ts';

/** `<commit>`, `+ uncommitted changes` when the work tree differs, or `<dir>` outside git. */
function describeCheckout(dir: string): string {
  try {
    const head = execFileSync('git', ['-C', dir, 'rev-parse', '--short', 'HEAD'], { stdio: 'pipe' })
      .toString()
      .trim();
    const dirty = execFileSync('git', [
      '-C',
      dir,
      'status',
      '--porcelain',
      '--untracked-files=no',
      '--',
      'src',
      'agent',
    ])
      .toString()
      .trim();
    return dirty ? `${head} + uncommitted changes` : head;
  } catch {
    return dir;
  }
}

const DEFAULT_REPO = '/work/.mirror/e2b-dev+E2B/repo';
const EXPECTED = join(import.meta.dirname, 'expected-failures.json');

const { values: args } = parseArgs({
  options: {
    sdk: { type: 'string', default: '2.51.0' },
    update: { type: 'boolean', default: false },
    only: { type: 'string', multiple: true },
    workers: { type: 'string', default: '2' },
    keep: { type: 'boolean', default: false },
    verbose: { type: 'boolean', default: false },
    'no-setup': { type: 'boolean', default: false },
    cove: { type: 'string' },
    ref: { type: 'string' },
    summary: { type: 'string' },
    http: { type: 'boolean', default: false },
  },
});
const sdk = args.sdk;
const log = (s: string) => process.stdout.write(`${s}\n`);

const repo = process.env.E2B_REPO ?? DEFAULT_REPO;
if (!existsSync(repo)) {
  log(
    `conformance: skipped: no E2B repository at ${repo} (set E2B_REPO to a clone or mirror of e2b-dev/E2B).`,
  );
  log('This run is a local measurement, not part of npm test: CI machines cannot reach GitHub.');
  process.exit(0);
}

const runDir = mkdtempSync(join(tmpdir(), 'cove-conformance-'));
const testsDir = join(runDir, 'tests');
const commit = extractTests(repo, runDir);
log(`E2B tests from ${repo} at ${commit}, e2b@${sdk}, run directory ${runDir}`);

// 1. Which files run, and why the others do not.
const skipped = new Map<string, string>();
let candidates: string[] = [];
for (const file of listTestFiles(testsDir)) {
  const { skip } = classify(file);
  if (skip) skipped.set(file, skip);
  else candidates.push(file);
}
if (args.only?.length) candidates = candidates.filter((f) => args.only!.some((o) => f.includes(o)));

/** A test file and the local helpers it imports, transitively. */
function withHelpers(file: string, exported: Set<string>): Map<string, Analysis> {
  const seen = new Map<string, Analysis>();
  const todo = [file];
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    const a = analyze(testsDir, f, exported);
    seen.set(f, a);
    for (const h of a.helpers) {
      const path = helperFile(testsDir, h);
      if (path) todo.push(path);
    }
  }
  return seen;
}

// 2. Install the SDK and whatever the tests import, then decide which need SDK internals.
const packages = new Set<string>();
for (const file of candidates)
  for (const a of withHelpers(file, new Set()).values()) a.packages.forEach((p) => packages.add(p));
packages.delete('e2b');
const sdkDir = installSdk(sdk, join(runDir, 'upstream-package.json'), packages, log);
const exported = await runtimeExports(sdkDir);
const toRun: string[] = [];
const rewrites = new Map<string, Set<string>>();
for (const file of candidates) {
  const group = withHelpers(file, exported);
  const needs = [...group.entries()]
    .filter(([, a]) => a.internals)
    .map(([f, a]) => (f === file ? '' : `${f}: `) + a.internals);
  if (needs.length) {
    skipped.set(file, needs.join('; '));
    continue;
  }
  toRun.push(file);
  for (const [f, a] of group) rewrites.set(f, a.rewrite);
}
for (const [f, specs] of rewrites) rewriteImports(testsDir, f, specs);

log(`\nSkipped files (${skipped.size}):`);
for (const [file, reason] of [...skipped.entries()].sort()) log(`  ${file.padEnd(42)} ${reason}`);
if (toRun.length === 0) {
  log('nothing to run');
  process.exit(1);
}

// 3. A vitest project of our own: upstream's config loads Playwright and other tools.
symlinkSync(join(sdkDir, 'node_modules'), join(runDir, 'node_modules'));
writeFileSync(join(runDir, 'package.json'), readFileSync(join(sdkDir, 'package.json')));
const resultsFile = join(runDir, 'results.json');
writeFileSync(
  join(runDir, 'vitest.config.mjs'),
  `export default ${JSON.stringify(
    {
      test: {
        include: toRun.map((f) => `tests/${f}`),
        environment: 'node',
        globals: false,
        isolate: true,
        testTimeout: 30_000,
        hookTimeout: 60_000,
        maxWorkers: Number(args.workers),
        setupFiles: [join(import.meta.dirname, 'guard.ts')],
        reporters: ['default', 'json'],
        outputFile: { json: resultsFile },
      },
    },
    null,
    2,
  )}\n`,
);

// 4. A Cove server of its own, and the SDK pointed at it. setup.sh first, as npm test does: it
// rebuilds the agent when its sources changed and is quick when nothing is missing.
// --ref serves one commit of this checkout instead of its work tree, which other engineers may
// be editing: an export beside the run, sharing node_modules, with its own agent build.
let root = resolve(args.cove ?? defaultRoot);
let coveVersion = describeCheckout(root);
if (args.ref) {
  const commitOf = execFileSync('git', ['-C', root, 'rev-parse', '--short', args.ref]).toString().trim();
  const dir = join(runDir, 'cove');
  // gVisor's sandboxes reach the agent binary in it as a mapped root: the run directory
  // (mkdtemp's 0700) must be searchable, as the server's home is (cove.ts).
  chmodSync(runDir, 0o711);
  mkdirSync(dir);
  execFileSync('tar', ['-x', '-C', dir], {
    input: execFileSync('git', ['-C', root, 'archive', commitOf], { maxBuffer: 1 << 30 }),
  });
  symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
  execFileSync('make', ['-s', '-C', join(dir, 'agent')], { stdio: 'inherit' });
  root = dir;
  coveVersion = commitOf;
} else if (!args['no-setup']) execFileSync('bash', [join(root, 'scripts', 'setup.sh')], { stdio: 'inherit' });
// ubuntu:22.04 and a devcontainer template, on this machine (stand-ins.ts).
const cacheRoot = process.env.COVE_CONFORMANCE_CACHE ?? join(homedir(), '.cache', 'cove-conformance');
// Whatever happens from here (a failure, Ctrl-C, a kill), cleanup.ts undoes what was made:
// sandboxes, the server, its bridge and nftables table, the templates upstream's tests built.
trapSignals(log);
let vitestExit: number | null | undefined;
try {
  const registry = await startRegistry(cacheRoot, TEMPLATES_HOME, log);
  onCleanup('the registry stand-in', () => registry.stop());
  log(`Docker Hub stand-in: registry at ${registry.mirror} (COVE_REGISTRY_MIRROR)`);
  const server = await startServer(root, join(runDir, 'cove.log'), {
    tls: !args.http,
    registryMirror: registry.mirror,
  });
  onCleanup('the server', () => stopServer(server, join(root, 'templates')));
  log(
    `\nCove ${coveVersion} at ${server.url} (instance ${INSTANCE}, subnet ${SUBNET}), log ${server.logFile}`,
  );
  const env: NodeJS.ProcessEnv = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('E2B_')),
  );
  // With TLS the SDK builds its own URLs, as against E2B: https://api.<domain>, https://<port>-<id>.<domain>.
  if (server.domain && server.caFile)
    Object.assign(env, {
      E2B_DOMAIN: server.domain,
      NODE_EXTRA_CA_CERTS: server.caFile,
      E2B_API_KEY: server.apiKey,
    });
  else
    Object.assign(env, { E2B_API_URL: server.url, E2B_SANDBOX_URL: server.url, E2B_API_KEY: server.apiKey });

  onCleanup('the devcontainer template', await ensureTemplate(server.url, server.apiKey, 'devcontainer'));
  const vitestLog = join(runDir, 'vitest.log');
  log(`running ${toRun.length} files with vitest (output in ${vitestLog})...`);
  const child = spawn(process.execPath, [join(sdkDir, 'node_modules', 'vitest', 'vitest.mjs'), 'run'], {
    cwd: runDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onCleanup('vitest', () => child.exitCode === null && child.kill('SIGKILL'));
  const out = createWriteStream(vitestLog);
  child.stdout.pipe(out);
  child.stderr.pipe(out);
  if (args.verbose) {
    child.stdout.pipe(process.stdout);
    child.stderr.pipe(process.stderr);
  }
  const limit = setTimeout(() => child.kill('SIGKILL'), 30 * 60_000);
  vitestExit = await new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  clearTimeout(limit);
} finally {
  await cleanup(log);
}

/** Stops the server (killing its sandboxes), then removes its templates, bridge and table. */
async function stopServer(server: Server, recipesDir: string): Promise<void> {
  const built = templatesBuiltIn(server.home); // read before stop() removes the state directory
  const left = await server.stop();
  if (left.length) log(`warning: sandbox directories left in ${server.home}: ${left.join(' ')}`);
  const kept = removeTemplates(TEMPLATES_HOME, built, recipesDir);
  log(
    `removed ${built.length - kept.length} templates the tests built${kept.length ? `; kept ${kept.join(' ')} (in use)` : ''}`,
  );
  const netns = removeNetwork(INSTANCE);
  if (netns.length)
    log(`warning: sandboxes left (${netns.join(' ')}): kept bridge ${INSTANCE}0 and table inet ${INSTANCE}`);
}
if (!existsSync(resultsFile)) {
  log(`vitest wrote no results (exit ${vitestExit}); see ${join(runDir, 'vitest.log')}`);
  process.exit(1);
}

// 5. Tables, then the comparison with the expected failures.
const results: TestResult[] = readVitestJson(resultsFile, testsDir);
const expectedFile: ExpectedFile = existsSync(EXPECTED)
  ? (JSON.parse(readFileSync(EXPECTED, 'utf8')) as ExpectedFile)
  : {};
const expected = expectedFile[sdk] ?? {};
const ran = new Set(toRun);
log('');
log(
  table(
    `e2b@${sdk} file`,
    tally(results, expected, (r) => r.file),
  ),
);
log('');
log(
  table(
    `e2b@${sdk} area`,
    tally(results, expected, (r) => areaOf(r.file)),
  ),
);

const summary = {
  sdk,
  date: new Date().toISOString(),
  upstream: commit,
  cove: coveVersion,
  areas: Object.fromEntries(tally(results, expected, (r) => areaOf(r.file))),
  files: Object.fromEntries(tally(results, expected, (r) => r.file)),
  skippedFiles: Object.fromEntries([...skipped.entries()].sort()),
  failures: results
    .filter((r) => r.outcome === 'failed')
    .map((r) => ({ id: r.id, error: firstLine(r.message) })),
};
writeFileSync(join(runDir, 'summary.json'), JSON.stringify(summary, null, 2));
if (args.summary) writeFileSync(args.summary, JSON.stringify(summary, null, 2) + '\n');
writeFileSync(
  join(runDir, 'failures.txt'),
  results
    .filter((r) => r.outcome === 'failed')
    .map((r) => `### ${r.id}\n${r.message}\n`)
    .join('\n'),
);

const full = !args.only?.length;
const verdict = compare(results, expected, ran, full);
if (args.update) {
  const next = updated(results, expected, ran, full);
  const file = { ...expectedFile, [sdk]: next };
  const sorted = Object.fromEntries(Object.entries(file).sort(([a], [b]) => b.localeCompare(a)));
  writeFileSync(EXPECTED, JSON.stringify(sorted, null, 2) + '\n');
  log(`\nwrote ${Object.keys(next).length} expected failures for e2b@${sdk} to ${EXPECTED}`);
}
for (const r of verdict.unexpected) log(`UNEXPECTED FAILURE  ${r.id}\n    ${firstLine(r.message)}`);
for (const s of verdict.stale) log(`STALE ENTRY (${s.why})  ${s.id}\n    was: ${s.reason}`);
for (const id of verdict.flakyPassed) log(`flaky entry passed  ${id}`);
const bad = verdict.unexpected.length + verdict.stale.length;
log(
  `\ne2b@${sdk}: ${results.filter((r) => r.outcome === 'passed').length} passed, ` +
    `${results.filter((r) => r.outcome === 'failed').length} failed, ` +
    `${verdict.unexpected.length} unexpected, ${verdict.stale.length} stale` +
    (args.update ? ' (expected failures rewritten)' : ''),
);
if (bad && !args.update) log(`full failure messages: ${join(runDir, 'failures.txt')}`);
if ((bad === 0 || args.update) && !args.keep) rmSync(runDir, { recursive: true, force: true });
else log(`kept ${runDir}`);
process.exit(bad && !args.update ? 1 : 0);
