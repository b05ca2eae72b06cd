import { readFileSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { cpus, freemem, loadavg, totalmem } from 'node:os';
import type { PrometheusSources } from './prometheus.ts';

/** MemAvailable (what can be had without swapping), else free memory. */
export function memAvailable(): number {
  try {
    const m = /^MemAvailable:\s+(\d+) kB$/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux: fall back below
  }
  return freemem();
}

/** Busy share of all CPUs since the previous call (since boot at the first). */
export function cpuBusy(): () => number {
  let last = { idle: 0, total: 0 };
  return () => {
    let idle = 0;
    let total = 0;
    for (const c of cpus()) {
      idle += c.times.idle;
      total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
    }
    const d = { idle: idle - last.idle, total: total - last.total };
    last = { idle, total };
    return d.total > 0 ? 1 - d.idle / d.total : 0;
  };
}

/** What `GET /cove/v1/host` answers: the same figures as the `cove_host_*`, `cove_sandboxes`
 * and `cove_pool_*` gauges, as one JSON object. */
export interface HostHealth {
  cpus: number;
  /** Share of all CPUs busy since the previous read of this object (not of /metrics). */
  cpuBusyRatio: number;
  load1: number;
  memoryBytes: number;
  memoryAvailableBytes: number;
  diskBytes: number;
  diskAvailableBytes: number;
  /** Sandboxes by backend, then by state. */
  sandboxes: Record<string, Record<string, number>>;
  pools: Record<string, { ready: number; target: number }>;
  /** The microvm backend's accelerator and why (`decided`: chosen at its start, else the host's probe). */
  microvm?: { name: 'kvm' | 'tcg'; host: string; why: string; decided: boolean };
}

export async function readHost(sources: PrometheusSources, busy: () => number): Promise<HostHealth> {
  const st = await statfs(sources.home);
  const sandboxes: HostHealth['sandboxes'] = {};
  for (const s of sources.sandboxes()) {
    const b = (sandboxes[s.runtime] ??= {});
    b[s.state] = (b[s.state] ?? 0) + 1;
  }
  return {
    cpus: cpus().length,
    cpuBusyRatio: busy(),
    load1: loadavg()[0]!,
    memoryBytes: totalmem(),
    memoryAvailableBytes: memAvailable(),
    diskBytes: st.blocks * st.bsize,
    diskAvailableBytes: st.bavail * st.bsize,
    sandboxes,
    pools: sources.pools(),
    ...(sources.microvm && { microvm: sources.microvm() }),
  };
}
