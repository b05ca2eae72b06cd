import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { cgroupLayout, createCgroupReader } from './cgroup.ts';
import { createDiskMeter, diskTotal, diskUsed } from './disk.ts';
import { createSampler, type Reading } from './sampler.ts';
import { scratchDir } from '../../test/scratch.ts';

const log = pino({ level: 'silent' });
const reading = (cpuNs: number): Reading => ({
  cpuNs,
  memUsed: 10,
  memTotal: 100,
  memCache: 1,
  diskUsed: 5,
  diskTotal: 50,
});

describe('metrics sampler', () => {
  it('turns cpu time into a percentage per interval, bounds the ring and filters by time', async () => {
    let clock = 1_000_000;
    let cpuNs = 0;
    const sandboxes = [{ id: 'a', cpus: 2, startedAt: new Date(clock - 10_000) }];
    const sampler = createSampler({
      sandboxes: () => sandboxes,
      read: () => Promise.resolve(reading(cpuNs)),
      intervalMs: 5000,
      capacity: 3,
      archive: 0, // the recent ring alone (history.test.ts: the archive)
      log,
      now: () => clock,
    });
    cpuNs = 5e9; // 5 s of cpu over the 10 s since the start, on 2 cpus: 25 %
    await sampler.tick();
    expect(sampler.latest('a')).toMatchObject({
      cpuUsedPct: 25,
      cpuCount: 2,
      timestampUnix: 1000,
      memUsed: 10,
    });
    clock += 5000;
    cpuNs += 10e9; // both cpus busy for the whole interval
    await sampler.tick();
    expect(sampler.latest('a')?.cpuUsedPct).toBe(100);
    for (let i = 0; i < 3; i++) {
      clock += 5000;
      await sampler.tick();
    }
    expect(sampler.samples('a').map((m) => m.timestampUnix)).toEqual([1010, 1015, 1020]);
    expect(sampler.latest('a')?.cpuUsedPct).toBe(0);
    expect(sampler.samples('a', { start: 1015 }).map((m) => m.timestampUnix)).toEqual([1015, 1020]);
    expect(sampler.samples('a', { end: 1014 }).map((m) => m.timestampUnix)).toEqual([1010]);
    expect(sampler.samples('a', { start: 0, end: 999 })).toEqual([]);
    expect(sampler.latest('a')?.timestamp).toBe(new Date(1_020_000).toISOString());

    sandboxes.length = 0; // the sandbox is gone: so is its ring
    await sampler.tick();
    expect(sampler.samples('a')).toEqual([]);
  });

  it('samples on demand once, and skips a sandbox whose cgroup is gone', async () => {
    let reads = 0;
    const sampler = createSampler({
      sandboxes: () => [
        { id: 'a', cpus: 1, startedAt: new Date() },
        { id: 'gone', cpus: 1, startedAt: new Date() },
      ],
      read: (id) => {
        reads++;
        return Promise.resolve(id === 'gone' ? undefined : reading(0));
      },
      intervalMs: 5000,
      log,
    });
    await sampler.ensure('a');
    await sampler.ensure('a');
    await sampler.ensure('gone');
    await sampler.ensure('unknown');
    expect(reads).toBe(2);
    expect(sampler.samples('a')).toHaveLength(1);
    expect(sampler.samples('gone')).toEqual([]);
  });
});

describe('cgroup reader', () => {
  it('finds the unified tree or the v1 cpuacct and memory controllers', () => {
    expect(cgroupLayout('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n')).toEqual({
      kind: 'v2',
      root: '/sys/fs/cgroup',
    });
    const hybrid = [
      'tmpfs /sys/fs/cgroup tmpfs rw 0 0',
      'cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0',
      'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0',
      'cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0',
    ].join('\n');
    expect(cgroupLayout(hybrid)).toEqual({
      kind: 'v1',
      cpuacct: '/sys/fs/cgroup/cpu,cpuacct',
      memory: '/sys/fs/cgroup/memory',
    });
    expect(cgroupLayout('')).toBeUndefined();
  });

  it('reads v2 and v1 files, and a missing cgroup as undefined', async () => {
    const root = scratchDir('cove-cgroup-');
    const v2 = join(root, 'v2', 'cove', 'a');
    mkdirSync(v2, { recursive: true });
    writeFileSync(join(v2, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\n');
    writeFileSync(join(v2, 'memory.current'), '1000\n');
    writeFileSync(join(v2, 'memory.max'), '4096\n');
    writeFileSync(join(v2, 'memory.stat'), 'anon 600\nfile 300\ninactive_file 200\n');
    const readV2 = createCgroupReader('cove', { kind: 'v2', root: join(root, 'v2') });
    expect(await readV2('a')).toEqual({ cpuNs: 1_500_000, memUsed: 800, memTotal: 4096, memCache: 300 });
    expect(await readV2('b')).toBeUndefined();

    const cpu = join(root, 'cpuacct', 'cove', 'a');
    const mem = join(root, 'memory', 'cove', 'a');
    mkdirSync(cpu, { recursive: true });
    mkdirSync(mem, { recursive: true });
    writeFileSync(join(cpu, 'cpuacct.usage'), '123456\n');
    writeFileSync(join(mem, 'memory.usage_in_bytes'), '5000\n');
    writeFileSync(join(mem, 'memory.limit_in_bytes'), '9223372036854771712\n');
    writeFileSync(join(mem, 'memory.stat'), 'cache 1\ntotal_cache 700\ntotal_inactive_file 400\n');
    const readV1 = createCgroupReader('cove', {
      kind: 'v1',
      cpuacct: join(root, 'cpuacct'),
      memory: join(root, 'memory'),
    });
    const r = await readV1('a');
    expect(r).toMatchObject({ cpuNs: 123456, memUsed: 4600, memCache: 700 });
    expect(r!.memTotal).toBeLessThan(2 ** 53); // "no limit" becomes the host's memory
  });
});

describe('disk use', () => {
  it('sums the blocks under a dir without following links out of it', async () => {
    const dir = scratchDir('cove-disk-');
    mkdirSync(join(dir, 'a', 'b'), { recursive: true });
    writeFileSync(join(dir, 'a', 'b', 'f'), Buffer.alloc(64 * 1024, 1));
    symlinkSync('/usr', join(dir, 'usr'));
    const used = await diskUsed(dir);
    expect(used).toBeGreaterThanOrEqual(64 * 1024);
    expect(used).toBeLessThan(1024 * 1024);
    expect(await diskTotal(dir)).toBeGreaterThan(used);
    expect(await diskUsed(join(dir, 'missing'))).toBe(0);
  });

  it('walks a dir again only when its last figure is older than the limit', async () => {
    const dir = scratchDir('cove-disk-');
    let clock = 0;
    const meter = createDiskMeter(30_000, () => clock);
    const empty = await meter.used(dir);
    writeFileSync(join(dir, 'f'), Buffer.alloc(64 * 1024, 1));
    expect(await meter.used(dir)).toBe(empty);
    clock += 30_000;
    expect(await meter.used(dir)).toBeGreaterThanOrEqual(empty + 64 * 1024);
    meter.forget(dir);
  });
});
