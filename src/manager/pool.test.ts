import { describe, expect, it, vi } from 'vitest';
import { createLogger } from '../core/log.ts';
import { createWarmPool, type PoolOptions } from './pool.ts';

function harness(opts: Partial<PoolOptions> = {}, hash = () => 'h1') {
  let next = 0;
  const discarded: number[] = [];
  const pool = createWarmPool<number>({
    min: 2,
    max: 4,
    budget: 10,
    templates: ['base'],
    idleShrinkMs: 60_000,
    ...opts,
    log: createLogger('silent'),
    fill: (template) => Promise.resolve({ value: next++, template, hash: hash() }),
    discard: (item) => {
      discarded.push(item.value);
      return Promise.resolve();
    },
  });
  return { pool, discarded };
}

describe('warm pool', () => {
  it('fills to its minimum, hands each sandbox out once, and refills', async () => {
    const { pool } = harness();
    pool.start();
    await pool.settled();
    expect(pool.stats()).toEqual({ base: { ready: 2, target: 2 } });
    expect(pool.take('base', 'h1')).toBe(0);
    expect(pool.take('base', 'h1')).toBe(1);
    await pool.settled();
    expect(pool.stats().base?.ready).toBe(2);
    expect(pool.take('base', 'h1')).toBe(2);
    await pool.drain();
  });

  it('grows on a miss, up to max and the budget, and starts a pool for a new template', async () => {
    const { pool } = harness({ min: 0, max: 3, budget: 4, templates: [] });
    pool.start();
    expect(pool.take('base', 'h1')).toBeUndefined(); // miss: target 1
    expect(pool.take('base', 'h1')).toBeUndefined(); // still filling: target 2
    await pool.settled();
    expect(pool.stats().base).toEqual({ ready: 2, target: 2 });
    for (let i = 0; i < 5; i++) pool.take('other', 'h1');
    await pool.settled();
    const { base, other } = pool.stats();
    expect(other!.target).toBe(3);
    expect(base!.ready + other!.ready).toBeLessThanOrEqual(4);
    await pool.drain();
  });

  it('never hands out a sandbox of an older template build', async () => {
    let build = 'old';
    const { pool, discarded } = harness({}, () => build);
    pool.start();
    await pool.settled();
    build = 'new';
    expect(pool.take('base', 'new')).toBeUndefined();
    await Promise.resolve();
    expect(discarded.sort()).toEqual([0, 1]);
    await pool.settled();
    expect(pool.take('base', 'new')).toBeGreaterThanOrEqual(2);
    await pool.drain();
  });

  it('is off with min and max 0, and drain removes everything ready', async () => {
    const off = harness({ min: 0, max: 0 });
    off.pool.start();
    expect(off.pool.take('base', 'h1')).toBeUndefined();
    await off.pool.settled();
    expect(off.pool.stats().base).toBeUndefined();

    const { pool, discarded } = harness();
    pool.start();
    await pool.settled();
    await pool.drain();
    expect(discarded.sort()).toEqual([0, 1]);
    expect(pool.take('base', 'h1')).toBeUndefined();
  });

  it('stops filling a template whose creates fail, until the next claim', async () => {
    let calls = 0;
    const pool = createWarmPool<number>({
      min: 3,
      max: 3,
      budget: 10,
      templates: ['base'],
      idleShrinkMs: 60_000,
      log: createLogger('silent'),
      fill: () => {
        calls++;
        return Promise.reject(new Error('host full'));
      },
      discard: () => Promise.resolve(),
    });
    pool.start();
    await pool.settled();
    expect(calls).toBe(1);
    expect(pool.stats().base).toEqual({ ready: 0, target: 0 });
    await pool.drain();
  });
  it('shrinks back to its minimum when nobody claims, one sandbox per idle period', async () => {
    vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
    try {
      const { pool, discarded } = harness({ min: 1, max: 4, idleShrinkMs: 4000 });
      pool.start();
      await pool.settled();
      for (let i = 0; i < 4; i++) pool.take('base', 'h1'); // a burst: the pool grows
      await pool.settled();
      const grown = pool.stats().base!;
      expect(grown.target).toBeGreaterThan(1);
      expect(grown.ready).toBe(grown.target);
      await vi.advanceTimersByTimeAsync(3000); // not idle long enough yet
      expect(pool.stats().base!.target).toBe(grown.target);
      await vi.advanceTimersByTimeAsync(2000);
      expect(pool.stats().base).toEqual({ ready: grown.target - 1, target: grown.target - 1 });
      await vi.advanceTimersByTimeAsync(60_000);
      expect(pool.stats().base).toEqual({ ready: 1, target: 1 });
      expect(discarded).toHaveLength(grown.target - 1);
      await pool.drain();
    } finally {
      vi.useRealTimers();
    }
  });
});
