import { describe, expect, it } from 'vitest';
import { keepaliveMs, withKeepalive } from './watch-dir.ts';

describe('WatchDir keepalives', () => {
  it('reads Keepalive-Ping-Interval in seconds, 90 by default', () => {
    expect(keepaliveMs('50')).toBe(50_000);
    expect(keepaliveMs(null)).toBe(90_000);
    expect(keepaliveMs('soon')).toBe(90_000);
    expect(keepaliveMs('0')).toBe(1000);
  });

  it('interleaves keepalives only while the source is idle, and keeps its order', async () => {
    async function* source() {
      yield 1;
      await new Promise((r) => setTimeout(r, 75));
      yield 2;
      yield 3;
    }
    const seen: unknown[] = [];
    for await (const x of withKeepalive(source(), 30)) seen.push(typeof x === 'symbol' ? 'k' : x);
    expect(seen[0]).toBe(1);
    expect(seen.slice(-2)).toEqual([2, 3]);
    expect(seen.filter((x) => x === 'k').length).toBeGreaterThanOrEqual(1);
  });

  it('passes a failure of the source on', async () => {
    async function* failing() {
      yield await Promise.resolve(1);
      throw new Error('watched directory removed');
    }
    const it = withKeepalive(failing(), 1000);
    expect((await it.next()).value).toBe(1);
    await expect(it.next()).rejects.toThrow('watched directory removed');
  });
});
