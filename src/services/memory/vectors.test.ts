import { describe, expect, it } from 'vitest';
import { createVectorCache, type VectorRow } from './vectors.ts';

const row = (id: number, v: number[], expires: number | null = null): VectorRow => ({
  id,
  embedding: new Uint8Array(Float32Array.from(v).buffer),
  expires_at: expires,
});

describe('vector cache', () => {
  it('finds the k most similar, skips the expired, sees appends and reloads after a drop', () => {
    let rows = [row(1, [1, 0]), row(2, [1, 1]), row(3, [0, 1]), row(4, [1, 0.1], 5)];
    let loads = 0;
    const cache = createVectorCache(() => (loads++, rows));
    const scope = { keyId: 'k', namespace: 'n' };
    const q = Float32Array.from([1, 0]);
    expect(cache.search(scope, q, 10, 2).map((r) => r.id)).toEqual([1, 2]);
    expect(cache.search(scope, q, 0, 2).map((r) => r.id)).toEqual([1, 4]);
    cache.append(scope, 5, new Uint8Array(Float32Array.from([2, 0.01]).buffer), null);
    expect(cache.search(scope, q, 10, 1).map((r) => r.id)).toEqual([1]);
    expect(cache.search(scope, q, 10, 3).map((r) => r.id)).toEqual([1, 5, 2]);
    expect(loads).toBe(1);
    rows = [row(3, [0, 1])];
    cache.drop(scope);
    expect(cache.search(scope, q, 10, 3)).toEqual([]);
    expect(loads).toBe(2);
  });
});
