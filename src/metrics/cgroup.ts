import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';

/** One reading of a sandbox's cgroup: cumulative cpu time, memory now. */
export interface CgroupReading {
  /** CPU time used since the cgroup was made, in nanoseconds. */
  cpuNs: number;
  /** Memory in use, without the page cache the kernel would drop first (inactive files). */
  memUsed: number;
  /** The sandbox's memory limit, or the host's memory when it has none. */
  memTotal: number;
  memCache: number;
}

/** Where the hierarchies this needs are mounted: one v2 tree, or v1's cpuacct and memory. */
type Layout = { kind: 'v2'; root: string } | { kind: 'v1'; cpuacct: string; memory: string };

/**
 * Finds the hierarchies in /proc/mounts. A v2 tree at /sys/fs/cgroup is the unified layout;
 * otherwise the v1 controllers are used (hybrid hosts keep their controllers in v1, and
 * sandboxes' cgroups live there: see runtime/oci/cgroups.ts).
 */
export function cgroupLayout(mounts = readFileSync('/proc/mounts', 'utf8')): Layout | undefined {
  const entries = mounts.split('\n').map((line) => line.split(' '));
  if (entries.some((e) => e[1] === '/sys/fs/cgroup' && e[2] === 'cgroup2'))
    return { kind: 'v2', root: '/sys/fs/cgroup' };
  const v1 = (controller: string) =>
    entries.find((e) => e[2] === 'cgroup' && (e[3] ?? '').split(',').includes(controller))?.[1];
  const cpuacct = v1('cpuacct');
  const memory = v1('memory');
  return cpuacct && memory ? { kind: 'v1', cpuacct, memory } : undefined;
}

function statField(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

async function number(path: string): Promise<number> {
  const text = (await readFile(path, 'utf8')).trim();
  return text === 'max' ? Infinity : Number(text);
}

/**
 * Reads sandbox `id`'s cgroup under `<parent>/<id>` (parent: the instance name, as the
 * runtime names it). Undefined when the cgroup is gone (a sandbox that just died).
 */
export function createCgroupReader(parent: string, layout = cgroupLayout()) {
  return async (id: string): Promise<CgroupReading | undefined> => {
    if (!layout) return undefined;
    try {
      if (layout.kind === 'v2') {
        const dir = join(layout.root, parent, id);
        const [cpu, current, max, stat] = await Promise.all([
          readFile(join(dir, 'cpu.stat'), 'utf8'),
          number(join(dir, 'memory.current')),
          number(join(dir, 'memory.max')),
          readFile(join(dir, 'memory.stat'), 'utf8'),
        ]);
        return {
          cpuNs: statField(cpu, 'usage_usec') * 1000,
          memUsed: Math.max(0, current - statField(stat, 'inactive_file')),
          memTotal: Math.min(max, totalmem()),
          memCache: statField(stat, 'file'),
        };
      }
      const cpuDir = join(layout.cpuacct, parent, id);
      const memDir = join(layout.memory, parent, id);
      const [cpuNs, usage, limit, stat] = await Promise.all([
        number(join(cpuDir, 'cpuacct.usage')),
        number(join(memDir, 'memory.usage_in_bytes')),
        number(join(memDir, 'memory.limit_in_bytes')),
        readFile(join(memDir, 'memory.stat'), 'utf8'),
      ]);
      return {
        cpuNs,
        memUsed: Math.max(0, usage - statField(stat, 'total_inactive_file')),
        // v1 writes "no limit" as a huge page-rounded number.
        memTotal: Math.min(limit, totalmem()),
        memCache: statField(stat, 'total_cache'),
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  };
}
