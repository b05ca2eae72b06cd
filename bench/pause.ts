// `npm run bench -- --only pause`: pause, resume, snapshot and fork latencies (issue 6), through
// the manager in process (the REST routes add ~1-2 ms: see the round-trip rows of run.ts), on
// crun and on runsc (gVisor) one after the other (BENCH_PAUSE_RUNTIMES, `crun,runsc`), for an
// idle sandbox and for one holding 256 MiB of touched memory:
//   pause with memory (crun: a cgroup freeze; runsc: a checkpoint to disk) and its resume
//   (crun: thaw + agent reconnect; runsc: restore + agent reconnect);
//   pause with memory: false (writable layer kept, processes stopped) and its resume (a boot);
//   createSnapshot (a frozen copy of the writable layer) and fork (count 1: on crun copy +
//   create; on runsc the source checkpointed and restored, the fork restored from its image).
// A resume starts 300 ms after its pause returned (a pause's release of mounts and network
// may still run then: resume waits for it), and is checked by a command. Counts:
// BENCH_PAUSE_RUNS (20). Needs root. Then where a resume with memory goes: the manager logs
// when each of its steps ended (pause.ts resume, `steps`), printed here as p50s.
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pino } from 'pino';
import { coveBench } from './cove.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { summarize, timed, type Summary } from './stats.ts';
import { markdownTable, ms } from './table.ts';
import type { Manager } from '../src/manager/manager.ts';

const RUNS = Number(process.env.BENCH_PAUSE_RUNS ?? 20);
const RUNTIMES = (process.env.BENCH_PAUSE_RUNTIMES ?? 'crun,runsc').split(',') as Array<'crun' | 'runsc'>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What a pause with memory is on each backend (docs/runtimes.md). */
const WITH_MEMORY = {
  crun: ['pause (memory: cgroup freeze)', 'resume (thaw + agent)'],
  runsc: ['pause (memory: checkpoint)', 'resume (restore + agent)'],
} as const;

const LOADS = [
  ['idle', 'true'],
  // python3 writes a byte in every page of 256 MiB and sleeps, in the background.
  [
    '256 MiB touched',
    "nohup python3 -c 'b=bytearray(256<<20)\nfor i in range(0,len(b),4096): b[i]=1\nimport time\ntime.sleep(3600)' >/dev/null 2>&1 &",
  ],
] as const;

async function run(manager: Manager, id: string, script: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    manager
      .exec(id, { argv: ['/bin/sh', '-c', script] }, { onData: () => {}, onExit: () => resolve() })
      .catch(reject);
  });
}

export async function pauseMain(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root');
  const progress = (msg: string) => console.error(`bench pause: ${msg}`);
  const rows: Array<[string, Summary]> = [];
  // Each memory resume's steps, from Cove's log lines (info); warnings and worse go to stderr.
  let steps: Array<Record<string, number>> = [];
  const stepRows: Array<[string, Record<string, number[]>]> = [];
  const sink = {
    write(line: string) {
      const o = JSON.parse(line) as {
        level: number;
        msg?: string;
        as?: string;
        steps?: Record<string, number>;
      };
      if (o.msg === 'sandbox resumed' && o.as !== 'filesystem' && o.steps) steps.push(o.steps);
      else if (o.level >= 40) process.stderr.write(line);
    },
  };
  const log = pino({ level: 'info', base: undefined }, sink);
  for (const runtime of RUNTIMES) {
    const cove = await coveBench({
      log,
      templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
      subnet16: process.env.BENCH_SUBNET ?? '10.19',
      pool: false,
      instance: `${BENCH_INSTANCE}p`,
      runtime,
    });
    const { manager } = cove;
    const [pauseName, resumeName] = WITH_MEMORY[runtime];
    try {
      for (const [load, script] of LOADS) {
        const sbx = await manager.create({ template: 'base', timeoutMs: 3600_000 });
        await run(manager, sbx.id, script);
        await sleep(1000);
        const samples: Record<string, number[]> = {};
        const add = (name: string, ms: number) => (samples[name] ??= []).push(ms);
        progress(`${runtime}, ${load}: ${RUNS} runs`);
        const byStep: Record<string, number[]> = {};
        for (let i = 0; i < RUNS; i++) {
          add(pauseName, await timed(() => manager.pause(sbx.id)));
          await sleep(300);
          steps = [];
          add(resumeName, await timed(() => manager.resume(sbx.id, { timeoutMs: 3600_000 })));
          for (const [step, at] of Object.entries(steps[0] ?? {})) (byStep[step] ??= []).push(at);
          await run(manager, sbx.id, 'true');
          add('pause (memory: false)', await timed(() => manager.pause(sbx.id, { memory: false })));
          await sleep(300);
          add(
            'resume (boot from the layer)',
            await timed(() => manager.resume(sbx.id, { timeoutMs: 3600_000 })),
          );
          await run(manager, sbx.id, script);
          await sleep(300);
          let snapshot = '';
          add(
            'createSnapshot',
            await timed(async () => (snapshot = (await manager.createSnapshot(sbx.id)).id)),
          );
          await manager.deleteSnapshot(snapshot);
          let forks: Awaited<ReturnType<Manager['fork']>> = [];
          add(
            'fork (count 1)',
            await timed(async () => (forks = await manager.fork(sbx.id, { count: 1, timeoutMs: 60_000 }))),
          );
          for (const f of forks) if ('sandbox' in f) await manager.kill(f.sandbox.id);
        }
        for (const [name, s] of Object.entries(samples))
          rows.push([`${name}, ${runtime}, ${load}`, summarize(s)]);
        stepRows.push([`${resumeName}, ${runtime}, ${load}`, byStep]);
        await manager.kill(sbx.id);
      }
    } finally {
      const leaks = await cove.close();
      if (leaks.length > 0) console.error(`bench pause: left behind: ${leaks.join(', ')}`);
    }
  }
  const m = await describeMachine(resolve(import.meta.dirname, '..'));
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`\n### Pause, resume, snapshot and fork (issue 6)\n`);
  console.log(`${m.cpuModel}, ${m.cores} cores, kernel ${m.kernel}, commit ${m.commit}, load ${load}\n`);
  console.log(
    markdownTable(
      ['scenario', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms'],
      rows.map(([name, s]) => [name, String(s.n), ms(s.p50), ms(s.p90), ms(s.p99), ms(s.max)]),
      1,
    ),
  );
  // The steps of each resume with memory, as ms from its call (p50 of each): queued (behind
  // the pause's background work), template or release (boot: the build looked up; host objects
  // a pause did not keep released), restore (mounts, network and the runtime's restore),
  // agent (its channel back), stored (record and timer).
  const seen = new Set(stepRows.flatMap(([, by]) => Object.keys(by)));
  const names = ['queued', 'template', 'release', 'restore', 'agent', 'stored'].filter((n) => seen.has(n));
  console.log(`\nWhere a resume with memory goes (ms from the call, p50 of when each step ended):\n`);
  console.log(
    markdownTable(
      ['resume', ...names],
      stepRows.map(([name, by]) => [name, ...names.map((n) => (by[n] ? ms(summarize(by[n]).p50) : '–'))]),
      1,
    ),
  );
  return 0;
}
