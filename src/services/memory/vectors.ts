import type { Scope } from './store.ts';

interface Loaded {
  ids: number[];
  vecs: Float32Array[];
  /** Each vector's length, computed once. */
  norms: number[];
  /** Epoch ms, or Infinity. */
  expires: number[];
  floats: number;
}

export interface VectorRow {
  id: number | bigint;
  embedding: Uint8Array;
  expires_at: number | bigint | null;
}

/**
 * The vectors of recently recalled scopes, in memory: reading 100 000 rows of blobs from SQLite
 * for every recall cost over a second (bench/services.ts). New entries are appended; anything
 * that deletes drops the scope's copy, which the next recall reads again. At most `maxFloats`
 * floats in all (least recently used scopes go first); a scope larger than that is scanned
 * from the database at each recall, uncached.
 */
export function createVectorCache(load: (scope: Scope) => VectorRow[], maxFloats = 32 * 2 ** 20) {
  const cache = new Map<string, Loaded>();
  let total = 0;
  const key = (s: Scope) => `${s.keyId}\0${s.namespace}`;

  function drop(scope: Scope): void {
    const k = key(scope);
    total -= cache.get(k)?.floats ?? 0;
    cache.delete(k);
  }

  function get(scope: Scope): Loaded {
    const k = key(scope);
    const hit = cache.get(k);
    if (hit) {
      cache.delete(k); // re-insert: most recently used last
      cache.set(k, hit);
      return hit;
    }
    const loaded: Loaded = { ids: [], vecs: [], norms: [], expires: [], floats: 0 };
    for (const r of load(scope)) {
      const v = new Float32Array(
        r.embedding.buffer.slice(r.embedding.byteOffset, r.embedding.byteOffset + r.embedding.byteLength),
      );
      loaded.ids.push(Number(r.id));
      loaded.vecs.push(v);
      loaded.norms.push(norm(v));
      loaded.expires.push(r.expires_at === null ? Infinity : Number(r.expires_at));
      loaded.floats += v.length;
    }
    if (loaded.floats <= maxFloats) {
      cache.set(k, loaded);
      total += loaded.floats;
      for (const [old, value] of cache) {
        if (total <= maxFloats || old === k) break;
        cache.delete(old);
        total -= value.floats;
      }
    }
    return loaded;
  }

  return {
    /** The `k` entries most similar to `query` (cosine > 0), unexpired at `now`. */
    search(scope: Scope, query: Float32Array, now: number, k: number): Array<{ id: number; sim: number }> {
      const { ids, vecs, norms, expires } = get(scope);
      const qn = norm(query);
      // the best k so far, ascending: a candidate is inserted only when it beats the worst
      const top: Array<{ id: number; sim: number }> = [];
      if (qn === 0) return top;
      for (let i = 0; i < ids.length; i++) {
        if (expires[i]! <= now || norms[i] === 0) continue;
        const v = vecs[i]!;
        let dot = 0;
        const n = Math.min(v.length, query.length);
        for (let j = 0; j < n; j++) dot += v[j]! * query[j]!;
        const sim = dot / (qn * norms[i]!);
        if (sim <= 0 || (top.length === k && sim <= top[0]!.sim)) continue;
        let at = top.findIndex((t) => t.sim > sim);
        if (at < 0) at = top.length;
        top.splice(at, 0, { id: ids[i]!, sim });
        if (top.length > k) top.shift();
      }
      return top.reverse();
    },

    /** A new entry of a scope whose vectors are cached. */
    append(scope: Scope, id: number, embedding: Uint8Array | null, expiresAt: number | null): void {
      const hit = cache.get(key(scope));
      if (!hit || !embedding) return;
      const v = new Float32Array(
        embedding.buffer.slice(embedding.byteOffset, embedding.byteOffset + embedding.byteLength),
      );
      hit.ids.push(id);
      hit.vecs.push(v);
      hit.norms.push(norm(v));
      hit.expires.push(expiresAt ?? Infinity);
      hit.floats += v.length;
      total += v.length;
    },

    drop,

    dropAll(): void {
      cache.clear();
      total = 0;
    },
  };
}

function norm(v: Float32Array): number {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  return Math.sqrt(s);
}
