import { randomBytes } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import { CoveError } from '../../core/errors.ts';
import { chunkText } from './chunk.ts';
import { ftsTerms, orQuery } from './query.ts';
import { MEMORY_SCHEMA } from './schema.ts';
import { createVectorCache, type VectorRow } from './vectors.ts';

/** Whose memory: an API key's namespace. A sandbox uses its creator key's. */
export interface Scope {
  keyId: string;
  namespace: string;
}

/** `short`: session context that expires (TTL); `fact`: long-term, forgotten by decay;
 * `chunk`: part of an ingested document. */
export type Kind = 'short' | 'fact' | 'chunk';

export interface Entry {
  id: number;
  kind: Kind;
  text: string;
  metadata: Record<string, unknown>;
  session?: string;
  createdAt: number;
  expiresAt?: number;
  lastUsedAt: number;
  citation?: { documentId: string; title: string; chunk: number; start: number; end: number };
}

export interface NewEntry {
  text: string;
  kind?: 'short' | 'fact';
  ttlSeconds?: number;
  session?: string;
  metadata?: Record<string, unknown>;
}

export interface MemoryOptions {
  /** Entries per key and namespace; beyond it the least recently used are forgotten. */
  capacity: number;
  /** Facts not recalled for this long are forgotten. */
  decayDays: number;
  /** Short-term entries without a TTL of their own live this long. */
  defaultShortTtlSeconds?: number;
  /** Embeddings through the model gateway, when an embedding model is configured. Undefined
   * back (the provider failed): the entry is kept for full-text recall alone. */
  embed?: (texts: string[], keyId: string) => Promise<Float32Array[] | undefined>;
}

const DAY = 24 * 3600_000;
/** Reciprocal rank fusion's constant (Cormack et al. 2009): ranks, not raw scores, are merged. */
const RRF_K = 60;
/** A word in at least this many entries is common: ranking every entry that holds it costs
 * most of a recall (bench/services.ts) while BM25 gives it little weight, so a query that also
 * has rarer words is matched on those alone. */
const COMMON_DF = 2000;

/**
 * Long- and short-term memory over SQLite: FTS5 (porter stemmer) ranks by BM25; when an
 * embedding model is configured, cosine similarity over stored vectors ranks too, and the
 * two rankings are fused. Forgetting: TTL, decay of unused facts, delete, capacity (LRU).
 */
export function createMemory(db: DatabaseSync, opts: MemoryOptions, now: () => number = Date.now) {
  db.exec(MEMORY_SCHEMA);
  const COLS = `m.id, m.kind, m.text, m.metadata, m.session, m.document_id, m.chunk, m.start, m.end,
    m.created_at, m.expires_at, m.last_used_at, d.title`;
  const FROM = 'memories m LEFT JOIN documents d ON d.id = m.document_id';
  const LIVE = 'm.key_id = ? AND m.namespace = ? AND (m.expires_at IS NULL OR m.expires_at > ?)';
  const q = {
    insert: db.prepare(`INSERT INTO memories (key_id, namespace, kind, text, metadata, session, document_id,
      chunk, start, end, created_at, expires_at, last_used_at, embedding)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    get: db.prepare(`SELECT ${COLS} FROM ${FROM} WHERE m.id = ? AND ${LIVE}`),
    list: db.prepare(`SELECT ${COLS} FROM ${FROM} WHERE ${LIVE} AND (? IS NULL OR m.kind = ?)
      AND (? IS NULL OR m.session = ?) ORDER BY m.id DESC LIMIT ?`),
    remove: db.prepare('DELETE FROM memories WHERE id = ? AND key_id = ? AND namespace = ?'),
    clear: db.prepare('DELETE FROM memories WHERE key_id = ? AND namespace = ?'),
    clearDocs: db.prepare('DELETE FROM documents WHERE key_id = ? AND namespace = ?'),
    count: db.prepare('SELECT COUNT(*) AS n FROM memories WHERE key_id = ? AND namespace = ?'),
    evict: db.prepare(`DELETE FROM memories WHERE id IN (SELECT id FROM memories
      WHERE key_id = ? AND namespace = ? ORDER BY last_used_at, id LIMIT ?)`),
    fts: db.prepare(`SELECT m.id FROM memories_fts JOIN memories m ON m.id = memories_fts.rowid
      WHERE memories_fts MATCH ? AND ${LIVE} ORDER BY bm25(memories_fts) LIMIT ?`),
    df: db.prepare(
      `SELECT count(*) AS n FROM (SELECT 1 FROM memories_fts WHERE memories_fts MATCH ? LIMIT ${COMMON_DF})`,
    ),
    vectors: db.prepare(`SELECT id, embedding, expires_at FROM memories
      WHERE key_id = ? AND namespace = ? AND embedding IS NOT NULL`),
    touch: db.prepare('UPDATE memories SET last_used_at = ? WHERE id = ?'),
    insertDoc:
      db.prepare(`INSERT INTO documents (id, key_id, namespace, title, source, metadata, chunks, created_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
    docs: db.prepare(`SELECT id, title, source, metadata, chunks, created_at FROM documents
      WHERE key_id = ? AND namespace = ? ORDER BY created_at DESC`),
    removeDoc: db.prepare('DELETE FROM documents WHERE id = ? AND key_id = ? AND namespace = ?'),
    removeChunks: db.prepare('DELETE FROM memories WHERE document_id = ?'),
    expire: db.prepare('DELETE FROM memories WHERE expires_at IS NOT NULL AND expires_at <= ?'),
    decay: db.prepare("DELETE FROM memories WHERE kind = 'fact' AND last_used_at < ?"),
    orphanDocs: db.prepare(
      'DELETE FROM documents WHERE id NOT IN (SELECT DISTINCT document_id FROM memories WHERE document_id IS NOT NULL)',
    ),
  };

  type Row = {
    id: number;
    kind: Kind;
    text: string;
    metadata: string;
    session: string | null;
    document_id: string | null;
    chunk: number | null;
    start: number | null;
    end: number | null;
    created_at: number;
    expires_at: number | null;
    last_used_at: number;
    title: string | null;
  };
  const toEntry = (r: Row): Entry => ({
    id: Number(r.id),
    kind: r.kind,
    text: r.text,
    metadata: JSON.parse(r.metadata) as Record<string, unknown>,
    ...(r.session !== null && { session: r.session }),
    createdAt: Number(r.created_at),
    ...(r.expires_at !== null && { expiresAt: Number(r.expires_at) }),
    lastUsedAt: Number(r.last_used_at),
    ...(r.document_id !== null && {
      citation: {
        documentId: r.document_id,
        title: r.title ?? '',
        chunk: Number(r.chunk),
        start: Number(r.start),
        end: Number(r.end),
      },
    }),
  });

  function transaction<T>(fn: () => T): T {
    db.exec('BEGIN IMMEDIATE');
    try {
      const result = fn();
      db.exec('COMMIT');
      return result;
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  }

  const vectorCache = createVectorCache(
    (scope) => q.vectors.all(scope.keyId, scope.namespace) as unknown as VectorRow[],
  );

  function enforceCapacity(scope: Scope): void {
    const n = Number((q.count.get(scope.keyId, scope.namespace) as { n: number }).n);
    if (n <= opts.capacity) return;
    q.evict.run(scope.keyId, scope.namespace, n - opts.capacity);
    vectorCache.drop(scope);
  }

  async function embedAll(texts: string[], keyId: string): Promise<Array<Uint8Array | null>> {
    const vectors = opts.embed && texts.length ? await opts.embed(texts, keyId) : undefined;
    return texts.map((_, i) => {
      const v = vectors?.[i];
      return v ? new Uint8Array(v.buffer, v.byteOffset, v.byteLength) : null;
    });
  }

  function get(scope: Scope, id: number): Entry {
    const row = q.get.get(id, scope.keyId, scope.namespace, now()) as Row | undefined;
    if (!row) throw new CoveError('not_found', `memory ${id} not found in namespace ${scope.namespace}`);
    return toEntry(row);
  }

  return {
    /** Stores entries (one transaction; capacity checked once at the end). */
    async add(scope: Scope, entries: NewEntry[]): Promise<Entry[]> {
      const vectors = await embedAll(
        entries.map((e) => e.text),
        scope.keyId,
      );
      const t = now();
      const ids = transaction(() => {
        const out = entries.map((e, i) => {
          const kind = e.kind ?? 'fact';
          const ttl = e.ttlSeconds ?? (kind === 'short' ? (opts.defaultShortTtlSeconds ?? 3600) : undefined);
          const expires = ttl === undefined ? null : t + ttl * 1000;
          const r = q.insert.run(
            scope.keyId,
            scope.namespace,
            kind,
            e.text,
            JSON.stringify(e.metadata ?? {}),
            e.session ?? null,
            null,
            null,
            null,
            null,
            t,
            expires,
            t,
            vectors[i] ?? null,
          );
          return { id: Number(r.lastInsertRowid), expires };
        });
        enforceCapacity(scope);
        return out;
      });
      // after the commit: a rolled-back entry never reaches the cache
      ids.forEach(({ id, expires }, i) => vectorCache.append(scope, id, vectors[i] ?? null, expires));
      return ids.flatMap(({ id }) => {
        try {
          return [get(scope, id)];
        } catch {
          return []; // evicted at once: a capacity smaller than the batch
        }
      });
    },

    get,

    list(scope: Scope, filter: { kind?: Kind; session?: string; limit?: number }): Entry[] {
      const kind = filter.kind ?? null;
      const session = filter.session ?? null;
      const args = [scope.keyId, scope.namespace, now(), kind, kind, session, session, filter.limit ?? 100];
      const rows = q.list.all(...args) as Row[];
      return rows.map(toEntry);
    },

    remove(scope: Scope, id: number): void {
      vectorCache.drop(scope);
      if (Number(q.remove.run(id, scope.keyId, scope.namespace).changes) === 0)
        throw new CoveError('not_found', `memory ${id} not found in namespace ${scope.namespace}`);
    },

    /** Forgets a whole namespace; returns how many entries it held. */
    clear(scope: Scope): number {
      vectorCache.drop(scope);
      return transaction(() => {
        q.clearDocs.run(scope.keyId, scope.namespace);
        return Number(q.clear.run(scope.keyId, scope.namespace).changes);
      });
    },

    async ingest(
      scope: Scope,
      doc: {
        title: string;
        text: string;
        source?: string;
        metadata?: Record<string, unknown>;
        chunkSize?: number;
      },
    ): Promise<{ id: string; title: string; chunks: number }> {
      const chunks = chunkText(doc.text, doc.chunkSize);
      if (chunks.length === 0) throw new CoveError('invalid_argument', 'the document has no text');
      const vectors = await embedAll(
        chunks.map((c) => c.text),
        scope.keyId,
      );
      const id = `doc_${randomBytes(8).toString('hex')}`;
      const t = now();
      const metadata = JSON.stringify(doc.metadata ?? {});
      const inserted = transaction(() => {
        q.insertDoc.run(
          id,
          scope.keyId,
          scope.namespace,
          doc.title,
          doc.source ?? null,
          metadata,
          chunks.length,
          t,
        );
        const rows = chunks.map((c, i) =>
          q.insert.run(
            scope.keyId,
            scope.namespace,
            'chunk',
            c.text,
            metadata,
            null,
            id,
            i,
            c.start,
            c.end,
            t,
            null,
            t,
            vectors[i] ?? null,
          ),
        );
        enforceCapacity(scope);
        return rows;
      });
      inserted.forEach((r, i) =>
        vectorCache.append(scope, Number(r.lastInsertRowid), vectors[i] ?? null, null),
      );
      return { id, title: doc.title, chunks: chunks.length };
    },

    documents(scope: Scope) {
      return (q.docs.all(scope.keyId, scope.namespace) as Array<Record<string, unknown>>).map((d) => ({
        id: d.id as string,
        title: d.title as string,
        ...(d.source !== null && { source: d.source as string }),
        metadata: JSON.parse(d.metadata as string) as Record<string, unknown>,
        chunks: Number(d.chunks),
        createdAt: Number(d.created_at),
      }));
    },

    removeDocument(scope: Scope, id: string): void {
      vectorCache.drop(scope);
      transaction(() => {
        if (Number(q.removeDoc.run(id, scope.keyId, scope.namespace).changes) === 0)
          throw new CoveError('not_found', `document ${id} not found in namespace ${scope.namespace}`);
        q.removeChunks.run(id);
      });
    },

    /**
     * The entries best matching `query`: BM25 over the words (stemmed), fused with vector
     * similarity when embeddings exist. What is returned counts as used (decay restarts).
     */
    async recall(
      scope: Scope,
      input: { query: string; limit?: number; kind?: Kind; session?: string },
    ): Promise<Array<Entry & { score: number }>> {
      const limit = input.limit ?? 10;
      const t = now();
      const pool = Math.max(limit * 5, 50);
      const scores = new Map<number, number>();
      let terms = ftsTerms(input.query);
      if (terms.length > 1) {
        // a capped count per word: reading at most COMMON_DF entries of each
        const rare = terms.filter((w) => Number((q.df.get(w) as { n: number }).n) < COMMON_DF);
        if (rare.length > 0) terms = rare;
      }
      if (terms.length) {
        const rows = q.fts.all(orQuery(terms), scope.keyId, scope.namespace, t, pool) as Array<{
          id: number;
        }>;
        rows.forEach((r, rank) => scores.set(Number(r.id), 1 / (RRF_K + rank + 1)));
      }
      const [vector] = opts.embed ? ((await opts.embed([input.query], scope.keyId)) ?? []) : [];
      if (vector) {
        const ranked = vectorCache.search(scope, vector, t, pool);
        ranked.forEach((r, rank) => scores.set(r.id, (scores.get(r.id) ?? 0) + 1 / (RRF_K + rank + 1)));
      }
      const results: Array<Entry & { score: number }> = [];
      for (const [id, score] of [...scores].sort((a, b) => b[1] - a[1])) {
        if (results.length >= limit) break;
        let e: Entry;
        try {
          e = get(scope, id);
        } catch {
          continue; // gone since it was ranked (a vector copy a moment older than the table)
        }
        if (input.kind && e.kind !== input.kind) continue;
        if (input.session && e.session !== input.session) continue;
        results.push({ ...e, score: Math.round(score * 1e6) / 1e6 });
      }
      if (results.length) transaction(() => results.forEach((r) => q.touch.run(t, r.id)));
      return results;
    },

    /** Forgets what expired (TTL) and facts unused for decayDays. Run at start and every minute. */
    sweep(): { expired: number; decayed: number } {
      const t = now();
      return transaction(() => {
        const expired = Number(q.expire.run(t).changes);
        const decayed = Number(q.decay.run(t - opts.decayDays * DAY).changes);
        if (expired + decayed > 0) {
          q.orphanDocs.run();
          vectorCache.dropAll();
        }
        return { expired, decayed };
      });
    },
  };
}

export type Memory = ReturnType<typeof createMemory>;
