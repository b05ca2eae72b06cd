/** Fields of one stored sample: 56 bytes a sample, however large the numbers. */
export const FIELDS = 7; // at, cpuUsedPct, memUsed, memTotal, memCache, diskUsed, diskTotal

/** The last `capacity` samples; its size is fixed when it is made. */
class Ring {
  private readonly capacity: number;
  private readonly data: Float64Array;
  private next = 0;
  size = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.data = new Float64Array(capacity * FIELDS);
  }

  /** Adds a sample; when full, returns (a copy of) the oldest, which it overwrites. */
  push(values: ArrayLike<number>): Float64Array | undefined {
    const at = this.next * FIELDS;
    const evicted = this.size === this.capacity ? this.data.slice(at, at + FIELDS) : undefined;
    this.data.set(values, at);
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
    return evicted;
  }

  /** Oldest first. */
  *entries(): Generator<Float64Array> {
    const first = (this.next - this.size + this.capacity) % this.capacity;
    for (let i = 0; i < this.size; i++) {
      const at = ((first + i) % this.capacity) * FIELDS;
      yield this.data.subarray(at, at + FIELDS);
    }
  }
}

/**
 * `b` folded into `a` (a bucket of `n` samples): the time and sizes of the later one, the CPU
 * share averaged, memory the peak (what an operator looks for in a coarse chart).
 */
function fold(a: Float64Array, n: number, b: ArrayLike<number>, m = 1): void {
  a[0] = b[0]!;
  a[1] = (a[1]! * n + b[1]! * m) / (n + m);
  a[2] = Math.max(a[2]!, b[2]!);
  for (let i = 3; i < FIELDS; i++) a[i] = b[i]!;
}

/**
 * A sandbox's samples for its whole life in bounded memory: the last `recent` samples as
 * taken, and before them at most `archive` buckets, each merging `width` samples (12 at
 * first: a minute at 5 s). When the archive is full its neighbours are merged pairwise and
 * the width doubles, so a long life is kept at a coarser grain, never dropped. With the
 * defaults (720 + 720) that is 80 KiB a sandbox: the last hour at 5 s, then 12 hours at a
 * minute, a day at two minutes, and so on.
 */
export class History {
  private readonly recent: Ring;
  private readonly archive: Float64Array;
  private readonly archiveCapacity: number;
  private archived = 0;
  private width: number;
  /** The bucket being filled from what the recent ring evicts, and its count. */
  private pending = new Float64Array(FIELDS);
  private pendingCount = 0;
  last?: { at: number; cpuNs: number };

  constructor(opts: { recent: number; archive: number; width?: number }) {
    this.recent = new Ring(opts.recent);
    // Pairwise merging needs an even count.
    this.archiveCapacity = opts.archive - (opts.archive % 2);
    this.archive = new Float64Array(this.archiveCapacity * FIELDS);
    this.width = opts.width ?? 12;
  }

  get size(): number {
    return this.recent.size;
  }

  push(values: number[]): void {
    const evicted = this.recent.push(values);
    if (!evicted || this.archiveCapacity === 0) return;
    if (this.pendingCount === 0) this.pending.set(evicted);
    else fold(this.pending, this.pendingCount, evicted);
    if (++this.pendingCount < this.width) return;
    if (this.archived === this.archiveCapacity) {
      this.compact();
      // The bucket being filled takes the new width too, so that every bucket spans as many.
      if (this.pendingCount < this.width) return;
    }
    this.archive.set(this.pending, this.archived++ * FIELDS);
    this.pendingCount = 0;
  }

  private compact(): void {
    for (let i = 0; i < this.archived / 2; i++) {
      const a = this.archive.slice(2 * i * FIELDS, (2 * i + 1) * FIELDS);
      fold(a, 1, this.archive.subarray((2 * i + 1) * FIELDS, (2 * i + 2) * FIELDS));
      this.archive.set(a, i * FIELDS);
    }
    this.archived /= 2;
    this.width *= 2;
  }

  /** Oldest first: the archive's buckets, the one being filled, then the recent samples. */
  *entries(): Generator<Float64Array> {
    for (let i = 0; i < this.archived; i++) yield this.archive.subarray(i * FIELDS, (i + 1) * FIELDS);
    if (this.pendingCount > 0) yield this.pending;
    yield* this.recent.entries();
  }
}
