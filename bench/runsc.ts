// `node bench/runsc.ts` (or `npm run bench -- --only runsc`): the gVisor backend (issue 6)
// beside crun, on two Coves started side by side (instances <BENCH_INSTANCE>c and ...g):
//   1. create + first command (`true`) and kill, interleaved crun / runsc;
//   2. a command round trip through the agent in a long-lived sandbox of each;
//   3. runsc memory checkpoint (pause) and restore + agent reconnect (resume), for an idle
//      sandbox and for one holding 256 MiB of touched memory, at the driver (below the
//      manager: src/runtime/runsc), with the image's size.
// Needs root and runsc. Counts: BENCH_RUNSC_RUNS (creates, 20), BENCH_RUNSC_RT_RUNS (200),
// BENCH_RUNSC_CKPT_RUNS (5). See docs/benchmarks.md and docs/runtimes.md.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAgent, type AgentClient } from '../src/agent-channel/client.ts';
import { agentSocket, provision, sandboxDir, teardown, UID_COUNT, uidBase } from '../src/manager/host.ts';
import { NETNS_DIR } from '../src/network/network.ts';
import type { SandboxSpec } from '../src/runtime/driver.ts';
import { createRunscDriver } from '../src/runtime/runsc/runsc.ts';
import { createRuntimeSet } from '../src/runtime/set.ts';
import { createTemplateStore } from '../src/templates/index.ts';
import { coveBench } from './cove.ts';
import { BENCH_INSTANCE, benchHost } from './instance.ts';
import { describeMachine } from './machine.ts';
import { since, summarize, type Summary } from './stats.ts';
import { markdownTable, ms } from './table.ts';

const count = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const RUNS = count('BENCH_RUNSC_RUNS', 20);
const RT_RUNS = count('BENCH_RUNSC_RT_RUNS', 200);
const CKPT_RUNS = count('BENCH_RUNSC_CKPT_RUNS', 5);
const limits = { cpus: 1, memoryMiB: 1024, pids: 1024 };
/** Slots far above what the bench's Cove hands out, for the driver-level sandboxes. */
const FIRST_SLOT = 60_000;

function row(name: string, s: Summary): string[] {
  return [name, String(s.n), ms(s.p50), ms(s.p90), ms(s.max)];
}

export async function runscMain(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root');
  execFileSync('runsc', ['--version']);
  const repo = resolve(import.meta.dirname, '..');
  const templatesHome = process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';
  const progress = (msg: string) => console.error(`bench runsc: ${msg}`);
  const crun = await coveBench({
    templatesHome,
    subnet16: '10.15',
    pool: false,
    instance: `${BENCH_INSTANCE}c`,
  });
  const gvisor = await coveBench({
    templatesHome,
    subnet16: '10.16',
    pool: false,
    instance: `${BENCH_INSTANCE}g`,
    runtime: 'runsc',
  });
  const results: Record<string, Summary> = {};
  const images: Record<string, string> = {};
  try {
    const subjects = [
      ['crun', crun.subjects.find((s) => s.runtime === 'cove')!],
      ['runsc', gvisor.subjects.find((s) => s.runtime === 'cove')!],
    ] as const;
    const creates = new Map<string, number[]>();
    const kills = new Map<string, number[]>();
    progress(`${RUNS} creates each, interleaved`);
    for (let i = 0; i < RUNS; i++) {
      for (const [name, s] of subjects) {
        const r = await s.create!();
        creates.set(name, [...(creates.get(name) ?? []), r.total!]);
        kills.set(name, [...(kills.get(name) ?? []), r.kill!]);
      }
    }
    progress(`${RT_RUNS} round trips each`);
    for (const [, s] of subjects) await s.startLong!();
    const trips = new Map<string, number[]>();
    for (let i = 0; i < RT_RUNS; i++) {
      for (const [name, s] of subjects) trips.set(name, [...(trips.get(name) ?? []), await s.roundTrip!()]);
    }
    for (const [name] of subjects) {
      results[`create + first command, ${name}`] = summarize(creates.get(name)!);
      results[`kill, ${name}`] = summarize(kills.get(name)!);
      results[`command round-trip, ${name}`] = summarize(trips.get(name)!);
    }

    progress(`${CKPT_RUNS} checkpoints and restores, idle and with 256 MiB touched`);
    Object.assign(results, await checkpoints(`${BENCH_INSTANCE}g`, '10.16', templatesHome, repo, images));
  } finally {
    const left = [...(await crun.close()), ...(await gvisor.close())];
    if (left.length > 0) console.error(`bench runsc: left behind: ${left.join(', ')}`);
  }

  const machine = await describeMachine(repo);
  const table = markdownTable(
    ['scenario', 'n', 'p50 ms', 'p90 ms', 'max ms'],
    Object.entries(results).map(([name, s]) => row(name, s)),
    1,
  );
  console.log(table);
  for (const [name, size] of Object.entries(images)) console.log(`image, ${name}: ${size}`);
  const out = join(repo, 'bench', 'results');
  await mkdir(out, { recursive: true });
  const file = join(out, `${new Date().toISOString().slice(0, 16)}-runsc.json`);
  await writeFile(file, JSON.stringify({ machine, results, images }, null, 2));
  console.error(`bench runsc: wrote ${file}`);
  return 0;
}

/** Pause/resume at the runsc driver, on the runsc Cove's network, in slots of its own. */
async function checkpoints(
  instance: string,
  subnet16: string,
  templatesHome: string,
  repo: string,
  images: Record<string, string>,
): Promise<Record<string, Summary>> {
  const runtime = createRuntimeSet(
    [
      createRunscDriver({
        stateRoot: `/run/${instance}/runsc`,
        cgroupParent: instance,
        statxShim: join(repo, 'agent', 'build', 'cove-statx.so'),
      }),
    ],
    'runsc',
  );
  await runtime.init();
  const { deps, home } = await benchHost('runsc', runtime, { instance, subnet16 }, repo);
  const templateRootfs = (
    await createTemplateStore({ home: templatesHome, recipesDir: join(repo, 'templates') }).get('base')
  ).rootfs;
  const out: Record<string, Summary> = {};
  let slot = FIRST_SLOT;
  try {
    for (const [name, load] of [
      ['idle', ''],
      [
        '256 MiB touched',
        'b = bytearray(256 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nimport time; time.sleep(10**6)',
      ],
    ] as const) {
      const id = randomBytes(10).toString('hex');
      const token = randomBytes(16).toString('hex');
      const s = slot++;
      const spec: SandboxSpec = {
        id,
        runtime: 'runsc',
        rootfs: join(sandboxDir(deps, id), 'rootfs'),
        bundleDir: sandboxDir(deps, id),
        uidBase: uidBase(s),
        uidCount: UID_COUNT,
        limits,
        agentBinary: deps.agentBinary,
        agentRunDir: join(sandboxDir(deps, id), 'run'),
        agentToken: token,
        netns: join(NETNS_DIR, deps.network.slot(s, id).netns),
      };
      try {
        await provision(deps, { id, slot: s, templateRootfs, limits, agentToken: token, runtime: 'runsc' });
        let agent: AgentClient = await connectAgent(agentSocket(deps, id), token);
        if (load) await startLoad(agent, load);
        agent.close();
        const pauses: number[] = [];
        const resumes: number[] = [];
        const image = join(home, 'images', id);
        for (let i = 0; i < CKPT_RUNS; i++) {
          await rm(image, { recursive: true, force: true });
          let start = performance.now();
          await runtime.checkpoint(id, image);
          pauses.push(since(start));
          // A paused sandbox is resumed later than runsc takes to drop its state (its delete
          // waits for the stopped sandbox process to be reaped): resume is timed from there.
          while ((await runtime.status(id)) !== 'missing') await new Promise((r) => setTimeout(r, 50));
          start = performance.now();
          await runtime.restore(spec, image);
          agent = await connectAgent(agentSocket(deps, id), token, { timeoutMs: 30_000 });
          resumes.push(since(start));
          agent.close();
        }
        images[name] = execFileSync('du', ['-sh', image]).toString().split('\t')[0]!;
        out[`pause (checkpoint), runsc, ${name}`] = summarize(pauses);
        out[`resume (restore + agent), runsc, ${name}`] = summarize(resumes);
      } finally {
        await teardown(deps, id, s);
      }
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
  return out;
}

/** Starts `python` in the sandbox (in the background) and waits until it has touched its memory. */
async function startLoad(agent: AgentClient, python: string): Promise<void> {
  await agent.writeFile('/root/load.py', Buffer.from(`${python}\n`), { uid: 0, gid: 0 });
  const script = '(python3 /root/load.py </dev/null >/dev/null 2>&1 &); sleep 0.2';
  await new Promise<void>((done, fail) => {
    agent
      .spawn(
        { argv: ['/bin/sh', '-c', script], env: { PATH: '/usr/bin:/bin' }, cwd: '/', uid: 0, gid: 0 },
        { onData() {}, onExit: () => done() },
      )
      .catch(fail);
  });
  for (let i = 0; i < 300; i++) {
    let rss = '';
    await new Promise<void>((done, fail) => {
      agent
        .spawn(
          {
            argv: ['/bin/sh', '-c', 'grep VmRSS /proc/$(pgrep -f load.py | head -1)/status'],
            env: { PATH: '/usr/bin:/bin' },
            cwd: '/',
            uid: 0,
            gid: 0,
          },
          { onData: (_s, d) => (rss += d.toString()), onExit: () => done() },
        )
        .catch(fail);
    });
    if (Number(/(\d+) kB/.exec(rss)?.[1] ?? 0) > 250 * 1024) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the load did not touch its 256 MiB in 30 s');
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runscMain().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
