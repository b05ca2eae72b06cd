import type { Logger } from '../core/log.ts';

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
  /** Samples kept per sandbox; the oldest go first. 720 is an hour at 5 s. */
  capacity?: number;
  log: Logger;
  now?: () => number;
}

interface Ring {
  samples: SandboxMetric[];
  last?: { at: number; cpuNs: number };
}

export type Sampler = ReturnType<typeof createSampler>;

/**
 * Samples every running sandbox's cpu, memory and disk at a fixed interval into a bounded
 * ring per sandbox, for `GET /sandboxes/{id}/metrics`. A ring is dropped when its sandbox
 * stops being listed. Ticks never overlap: a slow one (big disks) delays the next.
 */
export function createSampler(opts: SamplerOptions) {
  const capacity = opts.capacity ?? 720;
  const now = opts.now ?? Date.now;
  const rings = new Map<string, Ring>();
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  async function sample(s: { id: string; cpus: number; startedAt: Date }): Promise<void> {
    const reading = await opts.read(s.id);
    if (!reading) return;
    const at = now();
    let ring = rings.get(s.id);
    if (!ring) rings.set(s.id, (ring = { samples: [] }));
    // The first sample averages over the sandbox's life so far; the others over one interval.
    const since = ring.last ?? { at: s.startedAt.getTime(), cpuNs: 0 };
    const wallNs = Math.max(1, at - since.at) * 1e6 * Math.max(1, s.cpus);
    const cpuUsedPct = Math.min(100, Math.max(0, ((reading.cpuNs - since.cpuNs) / wallNs) * 100));
    ring.last = { at, cpuNs: reading.cpuNs };
    ring.samples.push({
      timestamp: new Date(at).toISOString(),
      timestampUnix: Math.floor(at / 1000),
      cpuCount: s.cpus,
      cpuUsedPct: Math.round(cpuUsedPct * 100) / 100,
      memUsed: reading.memUsed,
      memTotal: reading.memTotal,
      memCache: reading.memCache,
      diskUsed: reading.diskUsed,
      diskTotal: reading.diskTotal,
    });
    if (ring.samples.length > capacity) ring.samples.splice(0, ring.samples.length - capacity);
  }

  async function tick(): Promise<void> {
    const current = opts.sandboxes();
    const ids = new Set(current.map((s) => s.id));
    for (const id of rings.keys()) if (!ids.has(id)) rings.delete(id);
    for (const s of current) {
      await sample(s).catch((err: unknown) => opts.log.warn({ err, sandbox: s.id }, 'metrics sample failed'));
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
      return (rings.get(id)?.samples ?? []).filter(
        (m) =>
          (range.start === undefined || m.timestampUnix >= range.start) &&
          (range.end === undefined || m.timestampUnix <= range.end),
      );
    },

    latest(id: string): SandboxMetric | undefined {
      return rings.get(id)?.samples.at(-1);
    },

    /** Takes a first sample of a sandbox that has none yet (a getMetrics right after create). */
    async ensure(id: string): Promise<void> {
      if (rings.get(id)?.samples.length) return;
      const s = opts.sandboxes().find((x) => x.id === id);
      if (s) await sample(s);
    },
  };
}
