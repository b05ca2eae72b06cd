// `npm run bench -- --only volumes`: what volumes cost (issue 13): the host-side mount step
// alone (cove-mount's idmapped clone per volume, then its undo), the same step timed inside a
// cold create and a kill through the manager with 0, 1 and 4 volumes (taken in turns so that
// load hits all alike; on a busy machine the step's own rows are the figure to read), and the
// volume create itself (POST /volumes: sparse image, mkfs.ext4, loop mount). Counts:
// BENCH_VOL_RUNS (20). Needs root.
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { loadConfig } from '../src/config/config.ts';
import { mountVolumes, unmountVolumes } from '../src/volumes/sandbox-mounts.ts';
import { coveBench, execTrue } from './cove.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { since, summarize } from './stats.ts';
import { markdownTable, ms } from './table.ts';

const RUNS = Number(process.env.BENCH_VOL_RUNS ?? 20);

export async function volumesMain(): Promise<number> {
  if (process.getuid?.() !== 0) throw new Error('the bench must run as root');
  const cove = await coveBench({
    templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    subnet16: process.env.BENCH_SUBNET ?? '10.21',
    pool: false,
    instance: `${BENCH_INSTANCE}v`,
  });
  const { manager } = cove;
  const samples: Record<string, number[]> = {};
  const add = (name: string, value: number) => (samples[name] ??= []).push(value);
  try {
    const volumes: Array<{ name: string; volumeId: string }> = [];
    for (let i = 0; i < 4; i++) {
      const start = performance.now();
      const res = await fetch(`${cove.url}/volumes`, {
        method: 'POST',
        headers: { 'x-api-key': cove.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ name: `bench-${i}` }),
      });
      if (res.status !== 201) throw new Error(`POST /volumes: ${res.status} ${await res.text()}`);
      add('volume create (1 GiB image: mkfs + loop mount)', since(start));
      const { volumeID } = (await res.json()) as { volumeID: string };
      volumes.push({ name: `bench-${i}`, volumeId: volumeID });
    }
    const helper = loadConfig({}).mountHelper;
    const scratch = await mkdtemp(join(cove.home, 'mount-step-'));
    for (let i = 0; i < RUNS + 2; i++) {
      for (const count of [1, 4]) {
        const dir = join(scratch, String(i));
        await mkdir(dir);
        const sources = volumes.slice(0, count).map((v, n) => ({
          source: join(cove.home, 'volumes', v.volumeId, 'data'),
          destination: `/mnt/v${n}`,
        }));
        const start = performance.now();
        await mountVolumes(helper, dir, sources, 1_000_000, 65_536);
        const mounted = since(start);
        const undo = performance.now();
        await unmountVolumes(helper, dir);
        if (i >= 2) {
          add(`mount step alone, ${count} volume${count === 1 ? '' : 's'}`, mounted);
          add(`unmount step alone, ${count} volume${count === 1 ? '' : 's'}`, since(undo));
        }
        await rm(dir, { recursive: true });
      }
    }
    await rm(scratch, { recursive: true });
    for (let i = 0; i < RUNS + 2; i++) {
      for (const count of [0, 1, 4]) {
        const volumeMounts = volumes.slice(0, count).map((v, n) => ({ ...v, path: `/mnt/v${n}` }));
        const start = performance.now();
        const info = await manager.create({ template: 'base', timeoutMs: 60_000, volumeMounts });
        const created = since(start);
        await execTrue(manager, info.id);
        const killStart = performance.now();
        await manager.kill(info.id);
        if (i < 2) continue; // warm-up
        add(`create, ${count} volume${count === 1 ? '' : 's'}`, created);
        add(`kill, ${count} volume${count === 1 ? '' : 's'}`, since(killStart));
      }
    }
  } finally {
    const leaks = await cove.close();
    if (leaks.length > 0) console.error(`bench volumes: left behind: ${leaks.join(', ')}`);
  }
  const m = await describeMachine(resolve(import.meta.dirname, '..'));
  const load = (await readFile('/proc/loadavg', 'utf8')).split(' ')[0];
  console.log(`\n### Volumes (issue 13)\n`);
  console.log(`${m.cpuModel}, ${m.cores} cores, kernel ${m.kernel}, commit ${m.commit}, load ${load}\n`);
  console.log(
    markdownTable(
      ['scenario', 'n', 'p50 ms', 'p90 ms', 'max ms'],
      Object.entries(samples).map(([name, v]) => {
        const s = summarize(v);
        return [name, String(s.n), ms(s.p50), ms(s.p90), ms(s.max)];
      }),
      1,
    ),
  );
  return 0;
}
