import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import { createCgroupReader } from './cgroup.ts';
import { createDiskMeter, diskTotal } from './disk.ts';
import { createSampler } from './sampler.ts';

/**
 * The sampler behind E2B's metrics API: each running sandbox's cpu and memory from its cgroup
 * (under the instance's parent) and its disk from its writable layer. `forget` drops a killed
 * sandbox's cached disk figure.
 */
export function createSandboxSampler(opts: {
  sandboxes: () => Array<{ id: string; state: string; limits: { cpus: number }; startedAt: Date }>;
  instance: string;
  sandboxesDir: string;
  intervalMs: number;
  log: Logger;
}) {
  const readCgroup = createCgroupReader(opts.instance);
  // A layer's size is walked, not read: kept for six samples rather than walked at each.
  const disk = createDiskMeter(6 * opts.intervalMs);
  const upperDir = (id: string) => join(opts.sandboxesDir, id, 'upper');
  const sampler = createSampler({
    sandboxes: () =>
      opts
        .sandboxes()
        .filter((s) => s.state === 'running')
        .map((s) => ({ id: s.id, cpus: s.limits.cpus, startedAt: s.startedAt })),
    read: async (id) => {
      const cgroup = await readCgroup(id);
      if (!cgroup) return undefined;
      const [used, total] = await Promise.all([disk.used(upperDir(id)), diskTotal(opts.sandboxesDir)]);
      return { ...cgroup, diskUsed: used, diskTotal: total };
    },
    intervalMs: opts.intervalMs,
    log: opts.log,
  });
  return { sampler, forget: (id: string) => disk.forget(upperDir(id)) };
}
