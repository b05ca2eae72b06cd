import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mountsUnder, must, sh } from './sh.ts';
import { since } from './stats.ts';
import type { Subject } from './subject.ts';
import { BENCH_INSTANCE } from './instance.ts';

/** Every container the bench starts carries this label, so that cleanup finds them all. */
export const LABEL = `${BENCH_INSTANCE}-bench`;

/**
 * The flags DESIGN.md measured: podman's default runtime (crun) fails on hybrid cgroups, and
 * runc needs finite ulimits here. `--rootfs` takes a writable directory (podman writes
 * /etc/hostname and /run into it): an overlay of the template under /tmp, mounted once.
 */
export const RUN_FLAGS = [
  '--runtime',
  'runc',
  '--ulimit',
  'nofile=1024:1024',
  '--ulimit',
  'nproc=1024:1024',
  '--network=none',
  '--label',
  LABEL,
];

export async function podmanPeer(opts: {
  rootfs: string;
  createRuns?: number;
  roundTripRuns?: number;
  /** The host file to copy in and out of the long-lived container, and where it comes back. */
  file: string;
  scratch: string;
}): Promise<Subject> {
  const dir = await mkdtemp(join(tmpdir(), 'coveb-podman-'));
  // Two overlays: one for the create loop, one for the long-lived container.
  const overlays: Record<'run' | 'long', string> = {
    run: join(dir, 'run', 'merged'),
    long: join(dir, 'long', 'merged'),
  };
  for (const name of ['run', 'long'] as const) {
    const base = join(dir, name);
    for (const sub of ['upper', 'work', 'merged']) await mkdir(join(base, sub), { recursive: true });
    await must('mount', [
      '-t',
      'overlay',
      'overlay',
      '-o',
      `lowerdir=${opts.rootfs},upperdir=${join(base, 'upper')},workdir=${join(base, 'work')}`,
      overlays[name],
    ]);
  }
  let seq = 0;
  let longId: string | undefined;
  const { size } = await stat(opts.file);
  const back = join(opts.scratch, 'podman-back.bin');

  async function run(rootfs: string, name: string): Promise<string> {
    const r = await must('podman', [
      'run',
      '-d',
      '--name',
      name,
      ...RUN_FLAGS,
      '--rootfs',
      rootfs,
      'sleep',
      'infinity',
    ]);
    return r.stdout.trim();
  }

  return {
    runtime: 'podman',
    createRuns: opts.createRuns,
    roundTripRuns: opts.roundTripRuns,
    notes: [
      `podman ${RUN_FLAGS.join(' ')} --rootfs <overlay of the template, mounted once>`,
      'create + first command = `podman run -d … sleep infinity` + `podman exec ID true`; kill = `podman rm -f -t 0 ID`',
      "file transfer = `podman cp FILE ID:/tmp/…` and `podman cp ID:/tmp/… FILE` (the container's /tmp is in its overlay)",
    ],

    async create() {
      const name = `${BENCH_INSTANCE}-${process.pid}-${seq++}`;
      const start = performance.now();
      const id = await run(overlays.run, name);
      const created = since(start);
      const execStart = performance.now();
      await must('podman', ['exec', id, 'true']);
      const exec = since(execStart);
      const total = since(start);
      const killStart = performance.now();
      await must('podman', ['rm', '-f', '-t', '0', id]);
      return { total, create: created, first: exec, kill: since(killStart) };
    },

    async startLong() {
      longId = await run(overlays.long, `${BENCH_INSTANCE}-${process.pid}-long`);
    },

    async roundTrip() {
      if (!longId) throw new Error('podman: no long-lived container');
      const start = performance.now();
      await must('podman', ['exec', longId, 'true']);
      return since(start);
    },

    async shellRoundTrip() {
      if (!longId) throw new Error('podman: no long-lived container');
      const start = performance.now();
      await must('podman', ['exec', longId, '/bin/bash', '-l', '-c', 'true']);
      return since(start);
    },

    transfer: {
      async write() {
        if (!longId) throw new Error('podman: no long-lived container');
        const start = performance.now();
        await must('podman', ['cp', opts.file, `${longId}:/tmp/coveb-file.bin`]);
        return since(start);
      },
      async read() {
        if (!longId) throw new Error('podman: no long-lived container');
        await rm(back, { force: true });
        const start = performance.now();
        await must('podman', ['cp', `${longId}:/tmp/coveb-file.bin`, back]);
        const ms = since(start);
        const got = (await stat(back)).size;
        if (got !== size) throw new Error(`podman cp out: ${got} bytes, wrote ${size}`);
        return ms;
      },
    },

    async cleanup() {
      const left: string[] = [];
      const ids = (await sh('podman', ['ps', '-aq', '--filter', `label=${LABEL}`])).stdout
        .split('\n')
        .filter(Boolean);
      if (ids.length) await sh('podman', ['rm', '-f', '-t', '0', ...ids]);
      const still = (await sh('podman', ['ps', '-aq', '--filter', `label=${LABEL}`])).stdout.trim();
      if (still) left.push(`podman containers ${still.replace(/\n/g, ' ')}`);
      for (const mnt of (await mountsUnder(dir)).reverse()) {
        const u = await sh('umount', [mnt]);
        if (u.code !== 0) left.push(`mount ${mnt} (${u.stderr.trim()})`);
      }
      if ((await mountsUnder(dir)).length === 0) await rm(dir, { recursive: true, force: true });
      return left;
    },
  };
}
