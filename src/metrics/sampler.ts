import type { Logger } from '../core/log.ts';
import { History } from './history.ts';

/** One sample as E2B's metrics endpoint returns it, `SandboxMetric` (spec 2.12). */
export interface SandboxMetric {
  timestamp: string;
  timestampUnix: number;
  cpuCount: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  memCache: number;
  diskUsed: number;
  diskTotal: number;
}

/** What the sampler reads from the host for one sandbox; undefined when it is gone. */
export interface Reading {
  /** Cumulative CPU time, in nanoseconds: the sampler turns it into a percentage. */
  cpuNs: number;
  memUsed: number;
  memTotal: number;
  memCache: number;
  diskUsed: number;
  diskTotal: number;
}

export interface SamplerOptions {
  /** The sandboxes to sample at each tick (the running ones). */
  sandboxes: () => Array<{ id: string; cpus: number; startedAt: Date }>;
  read: (id: string) => Promise<Reading | undefined>;
  intervalMs: number;
  /** Samples kept as taken per sandbox: 720 is an hour at 5 s, 40 KiB a sandbox. */
  capacity?: number;
  /** Merged buckets kept of older samples, for the sandbox's whole life (src/metrics/history.ts). */
  archive?: number;
  log: Logger;
  now?: () => number;
}

function metric(v: Float64Array, cpuCount: number): SandboxMetric {
  const at = v[0]!;
  return {
    timestamp: new Date(at).toISOString(),
    timestampUnix: Math.floor(at / 1000),
    cpuCount,
    cpuUsedPct: v[1]!,
    memUsed: v[2]!,
    memTotal: v[3]!,
    memCache: v[4]!,
    diskUsed: v[5]!,
    diskTotal: v[6]!,
  };
}

export type Sampler = ReturnType<typeof createSampler>;

/**
 * Samples every running sandbox's cpu, memory and disk at a fixed interval into a bounded
 * history per sandbox (the last hour as taken, its whole life before that in coarser buckets), for `GET /sandboxes/{id}/metrics`. A ring is dropped when its sandbox
 * stops being listed. Ticks never overlap: a slow one (big disks) delays the next.
 */
export function createSampler(opts: SamplerOptions) {
  const capacity = opts.capacity ?? 720;
  const archive = opts.archive ?? 720;
  const now = opts.now ?? Date.now;
  const rings = new Map<string, { ring: History; cpus: number }>();
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  async function sample(s: { id: string; cpus: number; startedAt: Date }): Promise<void> {
    const reading = await opts.read(s.id);
    if (!reading) return;
    const at = now();
    let entry = rings.get(s.id);
    if (!entry) rings.set(s.id, (entry = { ring: new History({ recent: capacity, archive }), cpus: s.cpus }));
    const { ring } = entry;
    // The first sample averages over the sandbox's life so far; the others over one interval.
    const since = ring.last ?? { at: s.startedAt.getTime(), cpuNs: 0 };
    const wallNs = Math.max(1, at - since.at) * 1e6 * Math.max(1, s.cpus);
    const cpuUsedPct = Math.min(100, Math.max(0, ((reading.cpuNs - since.cpuNs) / wallNs) * 100));
    ring.last = { at, cpuNs: reading.cpuNs };
    ring.push([
      at,
      Math.round(cpuUsedPct * 100) / 100,
      reading.memUsed,
      reading.memTotal,
      reading.memCache,
      reading.diskUsed,
      reading.diskTotal,
    ]);
  }

  async function tick(): Promise<void> {
    const current = opts.sandboxes();
    const ids = new Set(current.map((s) => s.id));
    for (const id of rings.keys()) if (!ids.has(id)) rings.delete(id);
    for (const s of current) {
      await sample(s).catch((err: unknown) => {
        // A sandbox killed since the tick began loses its cgroup mid-read: not worth a warning.
        if (opts.sandboxes().some((x) => x.id === s.id))
          opts.log.warn({ err, sandbox: s.id }, 'metrics sample failed');
      });
    }
  }

  return {
    /** Samples now, then every interval. */
    start(): void {
      const run = () => {
        ticking ??= tick().finally(() => (ticking = undefined));
      };
      run();
      timer = setInterval(run, opts.intervalMs);
      timer.unref();
    },

    async stop(): Promise<void> {
      clearInterval(timer);
      await ticking;
    },

    /** One tick, for tests. */
    tick,

    /** Samples of one sandbox with `start <= timestampUnix <= end` (unix seconds; either may be absent). */
    samples(id: string, range: { start?: number; end?: number } = {}): SandboxMetric[] {
      const entry = rings.get(id);
      const out: SandboxMetric[] = [];
      for (const v of entry?.ring.entries() ?? []) {
        const unix = Math.floor(v[0]! / 1000);
        if (
          (range.start === undefined || unix >= range.start) &&
          (range.end === undefined || unix <= range.end)
        )
          out.push(metric(v, entry!.cpus));
      }
      return out;
    },

    latest(id: string): SandboxMetric | undefined {
      const entry = rings.get(id);
      let last: Float64Array | undefined;
      for (const v of entry?.ring.entries() ?? []) last = v;
      return last && metric(last, entry!.cpus);
    },

    /** Takes a first sample of a sandbox that has none yet (a getMetrics right after create). */
    async ensure(id: string): Promise<void> {
      if (rings.get(id)?.ring.size) return;
      const s = opts.sandboxes().find((x) => x.id === id);
      if (s) await sample(s);
    },
  };
}
