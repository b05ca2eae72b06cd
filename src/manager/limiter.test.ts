import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { createLimiter } from './limiter.ts';

describe('build limiter', () => {
  it('runs at most `concurrency` at once, queues the rest, refuses beyond the queue', async () => {
    const limiter = createLimiter({ concurrency: 2, queue: 1 });
    let active = 0;
    let peak = 0;
    const gates: Array<() => void> = [];
    const job = () =>
      limiter.run(async () => {
        peak = Math.max(peak, ++active);
        await new Promise<void>((r) => gates.push(r));
        active--;
      });
    const jobs = [job(), job(), job()];
    await expect(job()).rejects.toSatisfy((e) => isCoveError(e, 'resource_exhausted'));
    expect(limiter.pending).toBe(3);
    while (gates.length > 0 || active > 0) {
      gates.shift()?.();
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(jobs);
    expect(peak).toBe(2);
    expect(limiter.pending).toBe(0);
  });

  it('frees its place when a job fails', async () => {
    const limiter = createLimiter({ concurrency: 1, queue: 0 });
    await expect(limiter.run(() => Promise.reject(new Error('x')))).rejects.toThrow('x');
    expect(await limiter.run(() => Promise.resolve(7))).toBe(7);
  });
});
