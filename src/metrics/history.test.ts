import { describe, expect, it } from 'vitest';
import { FIELDS, History } from './history.ts';

/** A sample at `t` with the CPU share and memory given. */
const sample = (t: number, cpu: number, mem: number) => [t, cpu, mem, 100, 1, t, 1000];
const rows = (h: History) => [...h.entries()].map((v) => [...v].slice(0, 3));

describe('metrics history', () => {
  it('keeps recent samples as taken and older ones merged, the whole life in bounded memory', () => {
    const h = new History({ recent: 4, archive: 4, width: 2 });
    for (let t = 1; t <= 6; t++) h.push(sample(t, t * 10, t));
    // 1 and 2 merged into one bucket (time of the later, mean CPU, peak memory); 3..6 as taken.
    expect(rows(h)).toEqual([
      [2, 15, 2],
      [3, 30, 3],
      [4, 40, 4],
      [5, 50, 5],
      [6, 60, 6],
    ]);
    h.push(sample(7, 70, 7)); // 3 evicted: a bucket being filled
    expect(rows(h)[1]).toEqual([3, 30, 3]);

    for (let t = 8; t <= 200; t++) h.push(sample(t, 50, t === 100 ? 999 : 1));
    const all = rows(h);
    // The archive's buckets all span the same number of samples, the first from t=1 on:
    // nothing of the start was dropped.
    const width = all[0]![0]!;
    expect(all[1]![0]! - all[0]![0]!).toBe(width);
    expect(all[2]![0]! - all[1]![0]!).toBe(width);
    expect(all.length).toBeLessThanOrEqual(4 + 4 + 1);
    expect(all.slice(-4).map((r) => r[0])).toEqual([197, 198, 199, 200]);
    expect(all.some((r) => r[2] === 999)).toBe(true); // a peak survives merging
    const times = all.map((r) => r[0]!);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Every bucket's CPU share is the mean of what it merged: 50 from t=8 on.
    expect(all.slice(2).every((r) => r[1] === 50)).toBe(true);
    expect(FIELDS).toBe(7);
  });

  it('without an archive keeps only the recent samples', () => {
    const h = new History({ recent: 2, archive: 0 });
    for (let t = 1; t <= 5; t++) h.push(sample(t, 0, 0));
    expect(rows(h).map((r) => r[0])).toEqual([4, 5]);
  });
});
