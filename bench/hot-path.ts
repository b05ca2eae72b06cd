// `node bench/hot-path.ts` (= `npm run bench -- --only hot-path`): the request path through
// the e2b SDK, measured by the server's CPU per operation as well as by latency. On a
// shared 2-core machine a latency moves with the neighbours' load; the CPU time Cove's
// process spends per operation does not, so it is the figure an A/B of a change compares.
// One Cove with its pools on (bench/cove.ts), the SDK in a child (bench/e2b.ts); phases:
// pool-hit `Sandbox.create()` + `commands.run('true')` + kill, `commands.run('true')` in a
// running sandbox, and a files.write + files.read. `--profile DIR` writes a V8 CPU profile
// of the server's thread per phase (open in Chrome DevTools or speedscope).
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { coveBench } from './cove.ts';
import { e2bSubject } from './e2b.ts';
import { summarize } from './stats.ts';

interface Phase {
  name: string;
  runs: number;
  /** One operation; resolves with its latency in ms (and named parts, if any). */
  op(): Promise<number | Record<string, number>>;
  /** Before each op, outside the measured time and CPU (the pool's refill). */
  between?(): Promise<void>;
}

interface PhaseResult {
  phase: string;
  n: number;
  load: number;
  /** Latency percentiles by part (`total` for single figures), ms. */
  latency: Record<string, { p50: number; p99: number }>;
  /** The server process's CPU (user + system) per operation, ms. */
  cpuPerOp: number;
}

async function runPhase(p: Phase, session: Session | undefined, profileDir: string | undefined) {
  const samples: Record<string, number[]> = {};
  let cpu = 0;
  if (session) await session.post('Profiler.start');
  for (let i = 0; i < p.runs; i++) {
    if (p.between) await p.between();
    const before = process.cpuUsage();
    const got = await p.op();
    const used = process.cpuUsage(before);
    cpu += (used.user + used.system) / 1000;
    for (const [k, v] of Object.entries(typeof got === 'number' ? { total: got } : got))
      (samples[k] ??= []).push(v);
  }
  if (session && profileDir) {
    const { profile } = await session.post('Profiler.stop');
    await writeFile(join(profileDir, `${p.name}.cpuprofile`), JSON.stringify(profile));
  }
  const latency: PhaseResult['latency'] = {};
  for (const [k, v] of Object.entries(samples)) {
    const s = summarize(v);
    latency[k] = { p50: s.p50, p99: s.p99 };
  }
  return { phase: p.name, n: p.runs, load: loadavg()[0] ?? 0, latency, cpuPerOp: cpu / p.runs };
}

export async function hotPathMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string', default: process.env.BENCH_HOT_RUNS ?? '60' },
      'files-mib': { type: 'string', default: process.env.BENCH_FILES_MIB ?? '64' },
      'files-runs': { type: 'string', default: process.env.BENCH_HOT_FILES_RUNS ?? '5' },
      profile: { type: 'string' },
      json: { type: 'string' },
    },
  });
  const runs = Number(values.runs);
  const filesRuns = Number(values['files-runs']);
  const profileDir = values.profile;
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const scratch = await mkdtemp(join(tmpdir(), 'coveb-hot-'));
  const file = join(scratch, 'file.bin');
  await writeFile(file, randomBytes(Number(values['files-mib']) * 2 ** 20));
  const cove = await coveBench({
    templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    subnet16: process.env.BENCH_SUBNET ?? '10.13',
    pool: true,
  });
  const sdk = e2bSubject({ url: cove.url, apiKey: cove.apiKey, manager: cove.manager, file, scratch });
  const session = profileDir ? new Session() : undefined;
  if (session) {
    session.connect();
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: 200 });
  }
  const results: PhaseResult[] = [];
  try {
    await cove.manager.pool.settled();
    const settled = () => cove.manager.pool.settled();
    const create = sdk.create?.bind(sdk);
    const shell = sdk.shellRoundTrip?.bind(sdk);
    const transfer = sdk.transfer;
    if (!create || !shell || !transfer || !sdk.startLong) throw new Error('e2b subject lacks an operation');
    for (let i = 0; i < 3; i++) await create(); // warm-up: modules, JIT, connections
    const phases: Phase[] = [
      { name: 'pool-hit create + commands.run + kill', runs, op: create, between: settled },
    ];
    results.push(await runPhase(phases[0]!, session, profileDir));
    await sdk.startLong();
    for (let i = 0; i < 10; i++) await shell();
    results.push(
      await runPhase({ name: 'commands.run(true)', runs: runs * 3, op: shell }, session, profileDir),
    );
    if (filesRuns > 0) {
      await transfer.write();
      await transfer.read();
      results.push(
        await runPhase(
          { name: 'files.write', runs: filesRuns, op: () => transfer.write() },
          session,
          profileDir,
        ),
      );
      if (transfer.writeOctet) {
        results.push(
          await runPhase(
            { name: 'files.write (octet-stream)', runs: filesRuns, op: () => transfer.writeOctet!() },
            session,
            profileDir,
          ),
        );
      }
      results.push(
        await runPhase(
          { name: 'files.read', runs: filesRuns, op: () => transfer.read() },
          session,
          profileDir,
        ),
      );
    }
  } finally {
    session?.disconnect();
    await sdk.cleanup();
    const left = await cove.close();
    await rm(scratch, { recursive: true, force: true });
    if (left.length) console.error(`hot-path: LEFT BEHIND: ${left.join(', ')}`);
  }
  console.log('| phase | n | load | p50 ms | p99 ms | parts p50 | server CPU ms/op |');
  console.log('| --- | --: | --: | --: | --: | --- | --: |');
  for (const r of results) {
    const { total, ...parts } = r.latency;
    const partText = Object.entries(parts)
      .filter(([k]) => k !== 'kill')
      .map(([k, v]) => `${k} ${v.p50.toFixed(2)}`)
      .join(', ');
    console.log(
      `| ${r.phase} | ${r.n} | ${r.load.toFixed(1)} | ${total?.p50.toFixed(2)} | ${total?.p99.toFixed(2)} | ${partText} | ${r.cpuPerOp.toFixed(2)} |`,
    );
  }
  if (values.json)
    await writeFile(values.json, JSON.stringify({ date: new Date().toISOString(), results }, null, 2));
}

if (import.meta.main) {
  hotPathMain(process.argv.slice(2)).catch((err: unknown) => {
    console.error('hot-path:', err);
    process.exit(1);
  });
}
