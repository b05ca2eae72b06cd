// `npm run bench -- --only microvm` (or `node bench/microvm.ts`): the QEMU microVM backend
// (issue 10) beside crun and runsc, in one run, one Cove per backend after the other on the
// same instance and subnet (BENCH_INSTANCE + "v", BENCH_SUBNET, 10.24 by default):
//   1. create + first command (`true`), and kill, through the manager in process (microvm: a
//      clone of the template's saved VM; its first create, which saves that VM, is a warm-up);
//   2. a VM's cold boot (no saved VM: the driver's noClones, below the manager) + `true`;
//   3. pause with memory and resume + `true` (crun: cgroup freeze and thaw; runsc: checkpoint
//      and restore; microvm: QEMU's state to a file and back);
//   4. host memory per idle sandbox (MemTotal - MemAvailable, bench/density.ts) at 50 and
//      at 200 sandboxes of each backend, then `true` in each.
// The accelerator the VMs ran on is named in the table. Counts: BENCH_MICROVM_RUNS (5),
// BENCH_MICROVM_COLD_RUNS (2), BENCH_MICROVM_PAUSE_RUNS (3), BENCH_MICROVM_DENSITY ("50,200"),
// BENCH_MICROVM_TCG_DENSITY (VMs under software emulation, "50": 150 saturate 2 cores),
// BENCH_MICROVM_RUNTIMES ("microvm,crun,runsc"). A phase that fails is reported and the run
// goes on. Under TCG on 2 cores at load ~15 this takes ~15 min, most of it runsc's and the
// VMs' densities. Needs root, runsc and QEMU (scripts/setup.sh).
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectAgent } from '../src/agent-channel/client.ts';
import { agentSocket, provision, teardown } from '../src/manager/host.ts';
import type { Manager } from '../src/manager/manager.ts';
import { probeHost } from '../src/runtime/microvm/accel.ts';
import { createMicrovmDriver } from '../src/runtime/microvm/microvm.ts';
import { createRuntimeSet } from '../src/runtime/set.ts';
import { createTemplateStore } from '../src/templates/index.ts';
import { coveBench, execTrue } from './cove.ts';
import { coveDensity, type DensityResult } from './density.ts';
import { BENCH_INSTANCE, benchHost } from './instance.ts';
import { describeMachine } from './machine.ts';
import { since, summarize, timed, type Summary } from './stats.ts';
import { markdownTable, ms } from './table.ts';

const count = (name: string, fallback: number) => Number(process.env[name] ?? fallback);
const RUNS = count('BENCH_MICROVM_RUNS', 5);
const COLD_RUNS = count('BENCH_MICROVM_COLD_RUNS', 2);
const PAUSE_RUNS = count('BENCH_MICROVM_PAUSE_RUNS', 3);
const counts = (name: string, fallback: string) =>
  (process.env[name] ?? fallback).split(',').map(Number).filter(Boolean);
const DENSITY = counts('BENCH_MICROVM_DENSITY', '50,200');
/**
 * Idle VMs at once under software emulation: each idle TCG guest still takes ~1.5% of a core
 * (its timers, emulated), so 150 of them saturated these 2 cores (load 200+, creates stalled):
 * 50 by default; with hardware KVM, DENSITY.
 */
const TCG_DENSITY = counts('BENCH_MICROVM_TCG_DENSITY', '50');
const RUNTIMES = (process.env.BENCH_MICROVM_RUNTIMES ?? 'microvm,crun,runsc').split(',') as Array<
  'crun' | 'runsc' | 'microvm'
>;
const INSTANCE = `${BENCH_INSTANCE}v`;
const SUBNET = process.env.BENCH_SUBNET ?? '10.24';
/** Slots far above what the bench's Cove hands out, for the driver-level cold boots. */
const FIRST_SLOT = 60_000;
const sleep = (t: number) => new Promise((r) => setTimeout(r, t));

/** What pause with memory is on each backend (docs/runtimes.md). */
const PAUSE = {
  crun: ['pause (cgroup freeze)', 'resume (thaw) + true'],
  runsc: ['pause (checkpoint to disk)', 'resume (restore) + true'],
  microvm: ['pause (VM state to a file)', 'resume (VM restored) + true'],
} as const;

export async function microvmMain(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root');
  const repo = resolve(import.meta.dirname, '..');
  const templatesHome = process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';
  const progress = (msg: string) => console.error(`bench microvm: ${msg}`);
  const started = Date.now();
  const rows: Array<[string, Summary]> = [];
  const densities: Array<[string, DensityResult]> = [];
  const failures: string[] = [];
  let accelerator = 'none';
  for (const runtime of RUNTIMES) {
    const cove = await coveBench({
      templatesHome,
      subnet16: SUBNET,
      pool: false,
      instance: INSTANCE,
      runtime,
    });
    const { manager } = cove;
    const subject = cove.subjects.find((s) => s.runtime === 'cove')!;
    // A phase that fails is reported as such and the run goes on: one flaky resume under
    // load must not lose the other backends' figures.
    const phase = async (name: string, work: () => Promise<void>) => {
      progress(`${runtime}: ${name}`);
      await work().catch((err: unknown) => {
        failures.push(`${runtime}, ${name}: ${err instanceof Error ? err.message : String(err)}`);
        progress(`${runtime}: ${name} failed: ${String(err)}`);
      });
    };
    try {
      await phase(`a warm-up create, then ${RUNS} creates`, async () => {
        await subject.create!();
        const creates: Record<string, number[]> = {};
        for (let i = 0; i < RUNS; i++)
          for (const [p, t] of Object.entries(await subject.create!())) (creates[p] ??= []).push(t);
        rows.push([`create + first command, ${runtime}`, summarize(creates.total!)]);
        rows.push([`kill, ${runtime}`, summarize(creates.kill!)]);
      });

      if (runtime === 'microvm')
        await phase(`${COLD_RUNS} cold boots`, async () => {
          const cold = await coldBoots(templatesHome, repo);
          accelerator = cold.accelerator;
          rows.push(['cold boot (no saved VM) + first command, microvm', summarize(cold.samples)]);
        });

      await phase(`${PAUSE_RUNS} pauses and resumes`, async () => {
        const [pauseName, resumeName] = PAUSE[runtime];
        const pauses: number[] = [];
        const resumes: number[] = [];
        const sbx = await manager.create({ template: 'base', timeoutMs: 3600_000 });
        try {
          await execTrue(manager, sbx.id);
          for (let i = 0; i < PAUSE_RUNS; i++) {
            pauses.push(await timed(() => manager.pause(sbx.id)));
            await sleep(300);
            resumes.push(await timed(() => resume(manager, sbx.id)));
          }
        } finally {
          if (pauses.length) rows.push([`${pauseName}, ${runtime}`, summarize(pauses)]);
          if (resumes.length) rows.push([`${resumeName}, ${runtime}`, summarize(resumes)]);
          await manager.kill(sbx.id).catch(() => undefined);
        }
      });

      const tcg = runtime === 'microvm' && probeHost() !== 'kvm';
      for (const n of tcg ? TCG_DENSITY : DENSITY)
        await phase(`density ${n}`, async () => {
          const d = await coveDensity({
            manager,
            n,
            cgroupParent: INSTANCE,
            leaks: () => cove.leaks(),
            progress,
            ...(runtime === 'microvm' && { own: qemuPssKiB }),
          });
          densities.push([runtime, { ...d, runtime }]);
        });
    } finally {
      const left = await cove.close();
      if (left.length > 0) console.error(`bench microvm: left behind: ${left.join(', ')}`);
    }
  }

  const machine = await describeMachine(repo);
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(`\n### MicroVMs beside crun and runsc (issue 10), accelerator: ${accelerator}\n`);
  console.log(
    `${new Date().toISOString().slice(0, 16)} UTC, ${machine.cpuModel}, ${machine.cores} cores, kernel ${machine.kernel}, ` +
      `commit ${machine.commit}, load ${load} at the end, ${minutes} min\n`,
  );
  console.log(
    markdownTable(
      ['scenario', 'n', 'p50 ms', 'p90 ms', 'max ms'],
      rows.map(([name, s]) => [name, String(s.n), ms(s.p50), ms(s.p90), ms(s.max)]),
      1,
    ),
  );
  console.log('');
  console.log(
    markdownTable(
      [
        'idle sandboxes',
        'alive',
        'host MiB each',
        'own MiB each (cgroup / QEMU PSS)',
        'create all, s',
        'answered',
        'kill all, s',
        'left',
      ],
      densities.map(([runtime, d]) => [
        `${d.target} ${runtime}`,
        String(d.alive),
        (d.hostKiBPer / 1024).toFixed(1),
        ((d.ownKiBPer ?? d.cgroupKiBPer ?? NaN) / 1024).toFixed(1),
        (d.createMs / 1000).toFixed(1),
        `${d.answered}/${d.alive}`,
        (d.killMs / 1000).toFixed(1),
        d.leftovers.length === 0 ? 'nothing' : d.leftovers.join('; '),
      ]),
      1,
    ),
  );
  for (const f of failures) console.log(`failed: ${f}`);
  const out = join(repo, 'bench', 'results');
  await mkdir(out, { recursive: true });
  const file = join(out, `${new Date().toISOString().slice(0, 16)}-microvm.json`);
  await writeFile(file, JSON.stringify({ machine, accelerator, load, rows, densities, failures }, null, 2));
  console.error(`bench microvm: wrote ${file}`);
  return 0;
}

/** The proportional set size of this bench's QEMU processes in all, KiB (a clone's share of its template's RAM file included). */
async function qemuPssKiB(): Promise<number> {
  let total = 0;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!cmdline.startsWith('qemu-system') || !cmdline.includes(`/run/${INSTANCE}/microvm/`)) continue;
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
    total += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? 0);
  }
  return total;
}

/** Resumes a paused sandbox and runs `true` in it (the resume is over when it answers). */
async function resume(manager: Manager, id: string): Promise<void> {
  await manager.resume(id, { timeoutMs: 3600_000 });
  await execTrue(manager, id);
}

/**
 * Cold boots at the microvm driver (noClones: each VM boots its kernel), on the microvm
 * Cove's bridge in slots of their own: create and start to the agent, then `true`.
 */
async function coldBoots(templatesHome: string, repo: string) {
  const driver = createMicrovmDriver({
    stateRoot: `/run/${INSTANCE}/microvm`,
    cacheDir: join(templatesHome, 'microvm'),
    agentBinary: join(repo, 'agent', 'build', 'cove-agent'),
    noClones: true,
  });
  const runtime = createRuntimeSet([driver], 'microvm');
  await runtime.init();
  const { deps, home } = await benchHost('microvm', runtime, { instance: INSTANCE, subnet16: SUBNET }, repo);
  const template = await createTemplateStore({
    home: templatesHome,
    recipesDir: join(repo, 'templates'),
  }).get('base');
  const samples: number[] = [];
  try {
    for (let i = 0; i < COLD_RUNS; i++) {
      const id = randomBytes(10).toString('hex');
      const token = randomBytes(16).toString('hex');
      const slot = FIRST_SLOT + i;
      try {
        const start = performance.now();
        await provision(deps, {
          id,
          slot,
          templateRootfs: template.rootfs,
          limits: template.limits,
          agentToken: token,
          runtime: 'microvm',
        });
        const agent = await connectAgent(agentSocket(deps, id), token, { timeoutMs: 60_000 });
        await new Promise<void>((done, fail) => {
          agent
            .spawn(
              { argv: ['/bin/true'], env: {}, cwd: '/', uid: 0, gid: 0 },
              { onData() {}, onExit: () => done() },
            )
            .catch(fail);
        });
        samples.push(since(start));
        agent.close();
      } finally {
        await teardown(deps, id, slot);
      }
    }
  } finally {
    await rm(home, { recursive: true, force: true });
  }
  return { samples, accelerator: driver.accelerator()?.name ?? 'unknown' };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  microvmMain().then(
    (code) => process.exit(code),
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
