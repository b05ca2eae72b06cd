import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Manager } from '../src/manager/manager.ts';
import { CGROUP_PARENT, ociConfig } from './crun.ts';
import { execTrue } from './cove.ts';
import { LABEL, RUN_FLAGS } from './podman.ts';
import { mountsUnder, must, sh } from './sh.ts';
import { BENCH_INSTANCE } from './instance.ts';

export interface DensityResult {
  runtime: string;
  /** How many were asked for, and how many were alive at once. */
  target: number;
  alive: number;
  createFailures: number;
  createMs: number;
  /** (MemTotal − MemAvailable) after − before, divided by `alive`, KiB. */
  hostKiBPer: number;
  /**
   * Growth of the memory cgroup above the containers (v1 memory.usage_in_bytes of
   * /sys/fs/cgroup/memory/<parent>: what the sandboxes themselves are charged, page cache
   * included, kernel memory outside the cgroups not), per container, KiB. A cross-check that
   * other work on the host does not move, unlike MemAvailable.
   */
  cgroupKiBPer?: number;
  /** The server's own RSS growth per sandbox (Cove in-process only), KiB. */
  serverRssKiBPer?: number;
  /** What `own` counts per sandbox while all are alive (a VM's QEMU PSS: bench/microvm.ts), KiB. */
  ownKiBPer?: number;
  /** `true` run in every one afterwards: how many exited 0, and how long all took. */
  answered: number;
  answerMs: number;
  killMs: number;
  killFailures: number;
  /** What was left after the kill (empty when clean). */
  leftovers: string[];
  errors: string[];
}

/** MemTotal − MemAvailable, KiB: what the host has taken that it cannot give back at once. */
export async function hostUsedKiB(): Promise<number> {
  const info = await readFile('/proc/meminfo', 'utf8');
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(info)?.[1] ?? NaN);
  return field('MemTotal') - field('MemAvailable');
}

/** The median of five readings 400 ms apart: a little less noise from the rest of the host. */
async function hostUsedSteadyKiB(): Promise<number> {
  const readings: number[] = [];
  for (let i = 0; i < 5; i++) {
    if (i) await new Promise((r) => setTimeout(r, 400));
    readings.push(await hostUsedKiB());
  }
  return readings.sort((a, b) => a - b)[2]!;
}

/** v1 memory.usage_in_bytes of a cgroup under the memory hierarchy's root, KiB (0 when absent). */
async function cgroupKiB(parent: string): Promise<number> {
  const raw = await readFile(join('/sys/fs/cgroup/memory', parent, 'memory.usage_in_bytes'), 'utf8').catch(
    () => '0',
  );
  return Number(raw.trim()) / 1024;
}

const settle = () => new Promise((r) => setTimeout(r, 3000));

/** Runs `fn` over `items`, `width` at a time; counts failures and keeps the first few errors. */
async function each<T>(
  items: readonly T[],
  width: number,
  fn: (item: T, i: number) => Promise<unknown>,
  errors: string[],
): Promise<{ ok: number; failed: number; ms: number }> {
  let next = 0;
  let ok = 0;
  let failed = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        try {
          await fn(items[i]!, i);
          ok++;
        } catch (err) {
          failed++;
          if (errors.length < 5) errors.push(err instanceof Error ? err.message : String(err));
        }
      }
    }),
  );
  return { ok, failed, ms: performance.now() - start };
}

/**
 * `n` idle Cove sandboxes at once (manager.create, 8 requests in flight: the limiter builds 4
 * at a time), host memory and Cove's RSS before and after, then `true` in every one, then all
 * killed and `leaks()` asked what is left.
 */
export async function coveDensity(opts: {
  manager: Manager;
  n: number;
  /** The memory cgroup Cove puts its sandboxes under: its instance name. */
  cgroupParent: string;
  leaks: () => Promise<string[]>;
  progress: (msg: string) => void;
  /** The sandboxes' own memory in all, KiB, read while they are alive (beside the host's). */
  own?: () => Promise<number>;
}): Promise<DensityResult> {
  const { manager, n } = opts;
  const errors: string[] = [];
  await settle();
  const hostBefore = await hostUsedSteadyKiB();
  const cgBefore = await cgroupKiB(opts.cgroupParent);
  const rssBefore = process.memoryUsage().rss;
  const ids: string[] = [];
  const ticker = setInterval(() => opts.progress(`  density: ${ids.length} sandboxes`), 10_000);
  let created;
  try {
    created = await each(
      Array.from({ length: n }),
      8,
      async () => ids.push((await manager.create({ template: 'base', timeoutMs: 3600_000 })).id),
      errors,
    );
  } finally {
    clearInterval(ticker);
  }
  await settle();
  const listed = new Set(manager.list().map((s) => s.id));
  const alive = ids.filter((id) => listed.has(id)).length;
  const hostAfter = await hostUsedSteadyKiB();
  const cgAfter = await cgroupKiB(opts.cgroupParent);
  const rssAfter = process.memoryUsage().rss;
  const own = opts.own ? (await opts.own()) / Math.max(1, alive) : undefined;
  opts.progress(`  density: ${alive} alive; running true in each`);
  const answered = await each(ids, 16, (id) => execTrue(manager, id), errors);
  opts.progress(`  density: ${answered.ok} answered; killing`);
  const killed = await each(ids, 8, (id) => manager.kill(id), errors);
  await settle();
  return {
    runtime: 'cove',
    target: n,
    alive,
    createFailures: created.failed,
    createMs: created.ms,
    hostKiBPer: (hostAfter - hostBefore) / Math.max(1, alive),
    cgroupKiBPer: (cgAfter - cgBefore) / Math.max(1, alive),
    serverRssKiBPer: (rssAfter - rssBefore) / 1024 / Math.max(1, alive),
    ...(own !== undefined && { ownKiBPer: own }),
    answered: answered.ok,
    answerMs: answered.ms,
    killMs: killed.ms,
    killFailures: killed.failed,
    leftovers: await opts.leaks(),
    errors,
  };
}

/**
 * `n` idle `crun run --detach` containers (`sleep infinity`, the crun peer's config: a bundle
 * each for its own cgroup), then `crun exec ID /bin/true` in every one, then kill + delete.
 */
export async function crunDensity(opts: {
  n: number;
  rootfs: string;
  mountHelper: string;
  stateRoot: string;
}): Promise<DensityResult> {
  const errors: string[] = [];
  const dir = await mkdtemp(join(tmpdir(), `${BENCH_INSTANCE}-crund-`));
  const crun = (...args: string[]) => ['crun', '--root', opts.stateRoot, ...args];
  const ids = Array.from({ length: opts.n }, (_, i) => `${BENCH_INSTANCE}-crund-${i}`);
  await mkdir(opts.stateRoot, { recursive: true, mode: 0o700 });
  try {
    for (const id of ids) {
      await mkdir(join(dir, id));
      await writeFile(
        join(dir, id, 'config.json'),
        JSON.stringify(ociConfig(opts.rootfs, ['/bin/sleep', 'infinity'], id)),
      );
    }
    await settle();
    const before = await hostUsedSteadyKiB();
    const cgBefore = await cgroupKiB(CGROUP_PARENT);
    const created = await each(
      ids,
      4,
      (id) =>
        must(
          opts.mountHelper,
          ['exec-without-unified', ...crun('run', '--detach', '--bundle', join(dir, id), id)],
          {
            capture: false,
          },
        ),
      errors,
    );
    await settle();
    const after = await hostUsedSteadyKiB();
    const cgAfter = await cgroupKiB(CGROUP_PARENT);
    const alive = (await sh('crun', ['--root', opts.stateRoot, 'list', '-q'])).stdout
      .split('\n')
      .filter((l) => l.startsWith(`${BENCH_INSTANCE}-crund-`)).length;
    const answered = await each(ids, 4, (id) => must('crun', crun('exec', id, '/bin/true').slice(1)), errors);
    const killed = await each(
      ids,
      4,
      async (id) => {
        await sh('crun', crun('kill', id, 'KILL').slice(1));
        await must('crun', crun('delete', '-f', id).slice(1));
      },
      errors,
    );
    return {
      runtime: 'crun',
      target: opts.n,
      alive,
      createFailures: created.failed,
      createMs: created.ms,
      hostKiBPer: (after - before) / Math.max(1, alive),
      cgroupKiBPer: (cgAfter - cgBefore) / Math.max(1, alive),
      answered: answered.ok,
      answerMs: answered.ms,
      killMs: killed.ms,
      killFailures: killed.failed,
      leftovers: (await sh('crun', ['--root', opts.stateRoot, 'list', '-q'])).stdout
        .split('\n')
        .filter((l) => l.startsWith(`${BENCH_INSTANCE}-crund-`)),
      errors,
    };
  } finally {
    for (const id of (await sh('crun', ['--root', opts.stateRoot, 'list', '-q'])).stdout.split('\n'))
      if (id.startsWith(`${BENCH_INSTANCE}-crund-`)) await sh('crun', crun('delete', '-f', id).slice(1));
    // Their cgroups go with `crun delete`; the crun peer's cleanup removes any leaf left.
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * `n` idle `podman run -d … sleep infinity` containers (the podman peer's flags), each on an
 * overlay of its own of the template, then `podman exec ID true` in each, then `podman rm -f`.
 */
export async function podmanDensity(opts: { n: number; rootfs: string }): Promise<DensityResult> {
  const errors: string[] = [];
  const dir = await mkdtemp(join(tmpdir(), 'coveb-podmand-'));
  const names = Array.from({ length: opts.n }, (_, i) => `${BENCH_INSTANCE}-podmand-${process.pid}-${i}`);
  try {
    for (let i = 0; i < opts.n; i++) {
      const base = join(dir, String(i));
      for (const sub of ['upper', 'work', 'merged']) await mkdir(join(base, sub), { recursive: true });
      await must('mount', [
        '-t',
        'overlay',
        'overlay',
        '-o',
        `lowerdir=${opts.rootfs},upperdir=${join(base, 'upper')},workdir=${join(base, 'work')}`,
        join(base, 'merged'),
      ]);
    }
    await settle();
    const before = await hostUsedSteadyKiB();
    const created = await each(
      names,
      2,
      (name, i) =>
        must('podman', [
          'run',
          '-d',
          '--name',
          name,
          ...RUN_FLAGS,
          '--rootfs',
          join(dir, String(i), 'merged'),
          'sleep',
          'infinity',
        ]),
      errors,
    );
    await settle();
    const after = await hostUsedSteadyKiB();
    const running = (
      await sh('podman', [
        'ps',
        '-q',
        '--filter',
        `label=${LABEL}`,
        '--filter',
        `name=${BENCH_INSTANCE}-podmand-`,
      ])
    ).stdout
      .split('\n')
      .filter(Boolean).length;
    const answered = await each(names, 2, (name) => must('podman', ['exec', name, 'true']), errors);
    const killed = await each(names, 2, (name) => must('podman', ['rm', '-f', '-t', '0', name]), errors);
    const still = (
      await sh('podman', ['ps', '-aq', '--filter', `name=${BENCH_INSTANCE}-podmand-`])
    ).stdout.trim();
    return {
      runtime: 'podman',
      target: opts.n,
      alive: running,
      createFailures: created.failed,
      createMs: created.ms,
      hostKiBPer: (after - before) / Math.max(1, running),
      answered: answered.ok,
      answerMs: answered.ms,
      killMs: killed.ms,
      killFailures: killed.failed,
      leftovers: still ? [`podman containers ${still.replace(/\n/g, ' ')}`] : [],
      errors,
    };
  } finally {
    const ids = (await sh('podman', ['ps', '-aq', '--filter', `name=${BENCH_INSTANCE}-podmand-`])).stdout
      .split('\n')
      .filter(Boolean);
    if (ids.length) await sh('podman', ['rm', '-f', '-t', '0', ...ids]);
    for (const mnt of (await mountsUnder(dir)).reverse()) await sh('umount', [mnt]);
    if ((await mountsUnder(dir)).length === 0) await rm(dir, { recursive: true, force: true });
  }
}
