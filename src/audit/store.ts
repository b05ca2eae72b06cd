import { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { currentRequest } from '../core/request-context.ts';

/**
 * What an audit record says happened. Lifecycle (`sandbox.*`, `network.*`) is kept longest
 * when a sandbox's records are pruned; the rest can be flooded (a loop of commands).
 */
export type AuditAction =
  | 'api'
  | 'sandbox.create'
  | 'sandbox.kill'
  | 'sandbox.pause'
  | 'sandbox.resume'
  | 'sandbox.fork'
  | 'network.policy'
  | 'process.start'
  | 'process.end'
  | 'process.signal'
  | 'file.write'
  | 'file.rename'
  | 'file.remove'
  | 'file.mkdir'
  | (string & {});

export type AuditValue = string | number | boolean | null | string[];

/** What a caller passes to record(): the action and its own fields. */
export interface AuditInput {
  /** The sandbox acted on; null for an API call on none (a create that failed). */
  sandboxId: string | null;
  action: AuditAction;
  /** 'ok', or the CoveError code of the failure. */
  outcome?: string;
  fields?: Record<string, AuditValue>;
  /** Default: the current request's key (core/request-context.ts); null: nobody's (a timeout). */
  keyId?: string | null;
  /** Default: the current request's id. */
  requestId?: string | null;
}

export interface AuditEvent {
  /** Increases with every record: the order in which things were acknowledged. */
  seq: number;
  /** Epoch milliseconds. */
  at: number;
  sandboxId: string | null;
  action: string;
  outcome: string;
  keyId: string | null;
  requestId: string | null;
  fields: Record<string, AuditValue>;
}

export interface AuditQuery {
  sandboxId?: string;
  keyId?: string;
  /** A prefix: `process.` selects starts, ends and signals. */
  action?: string;
  /** Epoch ms, inclusive. */
  since?: number;
  until?: number;
  /** Records after this seq (the previous page's `next`). */
  after?: number;
  limit?: number;
  /** Only what this key may see: its own sandboxes' records, the records it made, and nobody's. */
  visibleTo?: string;
}

export interface AuditOptions {
  /** Records kept per sandbox; beyond it the oldest go, lifecycle last (COVE_AUDIT_PER_SANDBOX). */
  perSandbox: number;
  /** Records older than this are removed, hourly (COVE_AUDIT_RETENTION_DAYS). */
  retentionMs: number;
  now?: () => number;
}

const MAX_FIELD = 4096;
const MAX_ITEMS = 256;
export const MAX_QUERY_LIMIT = 1000;
/** Lifecycle actions sort after the rest when a sandbox's oldest records are pruned. */
const LIFECYCLE = "(action LIKE 'sandbox.%' OR action LIKE 'network.%')";

/**
 * Each insert writes every page it changes into the WAL (4 KiB each), which is most of its
 * cost: so no AUTOINCREMENT (its sqlite_sequence row is one more page; a seq may restart
 * only once retention has emptied the trail), a key index only over the records that have a
 * key (API calls and lifecycle, not the flood of process and file records), and no index on
 * `at`: records are appended in time order, so a time is turned into a seq by a binary
 * search over the primary key (seqAt). 8 KiB of WAL per record instead of 21.
 */
const schema = `
  CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    sandbox_id TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    key_id TEXT,
    request_id TEXT,
    fields TEXT NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS events_sandbox ON events (sandbox_id, seq);
  DROP INDEX IF EXISTS events_key;
  DROP INDEX IF EXISTS events_at;
  CREATE INDEX IF NOT EXISTS events_by_key ON events (key_id, seq) WHERE key_id IS NOT NULL;
  CREATE TABLE IF NOT EXISTS owners (
    sandbox_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS owners_by_key ON owners (key_id);
  CREATE TABLE IF NOT EXISTS dropped (
    sandbox_id TEXT PRIMARY KEY,
    count INTEGER NOT NULL
  ) STRICT;`;

interface Row {
  seq: number;
  at: number;
  sandbox_id: string | null;
  action: string;
  outcome: string;
  key_id: string | null;
  request_id: string | null;
  fields: string;
}

function bounded(fields: Record<string, AuditValue> = {}): string {
  const out: Record<string, AuditValue> = {};
  for (const [k, v] of Object.entries(fields))
    out[k] =
      typeof v === 'string'
        ? v.slice(0, MAX_FIELD)
        : Array.isArray(v)
          ? v.slice(0, MAX_ITEMS).map((x) => x.slice(0, MAX_FIELD))
          : v;
  return JSON.stringify(out);
}

export type AuditStore = ReturnType<typeof createAuditStore>;

/**
 * The audit trail: one SQLite file of its own (`audit.db` beside `cove.db`), so that its
 * write rate and its pruning never hold the store's lock. `record()` is synchronous and the
 * row is in the WAL when it returns (synchronous=NORMAL: it survives a crash of Cove, not a
 * power cut): callers record before they acknowledge. Bounded twice: each sandbox keeps its
 * last `perSandbox` records (counted in memory, pruned a tenth at a time, lifecycle last, the
 * number dropped kept), and nothing outlives `retentionMs`.
 */
export function createAuditStore(path: string, opts: AuditOptions) {
  const now = opts.now ?? Date.now;
  const db = new DatabaseSync(path);
  db.exec('PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
  const fresh = !(db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'owners'").get() as unknown);
  db.exec(schema);
  // A trail from before owners were kept: its creates say whose each sandbox is.
  if (fresh)
    db.exec(
      "INSERT OR IGNORE INTO owners SELECT sandbox_id, key_id FROM events WHERE action = 'sandbox.create' AND sandbox_id IS NOT NULL AND key_id IS NOT NULL",
    );
  // Checkpoints (and their fsyncs) run in a worker, not in record(): see checkpointer.ts.
  db.exec('PRAGMA wal_autocheckpoint = 0');
  const checkpointer = new Worker(new URL('./checkpointer.ts', import.meta.url), {
    workerData: { path, everyMs: 1000 },
  });
  checkpointer.unref();

  const insert = db.prepare(
    'INSERT INTO events (at, sandbox_id, action, outcome, key_id, request_id, fields) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const pruneOldest = db.prepare(
    `DELETE FROM events WHERE seq IN (SELECT seq FROM events WHERE sandbox_id IS ? ORDER BY ${LIFECYCLE}, seq LIMIT ?)`,
  );
  const addDropped = db.prepare(
    'INSERT INTO dropped (sandbox_id, count) VALUES (?, ?) ON CONFLICT (sandbox_id) DO UPDATE SET count = count + excluded.count',
  );
  const droppedOf = db.prepare('SELECT count FROM dropped WHERE sandbox_id = ?');
  const addOwner = db.prepare('INSERT OR IGNORE INTO owners (sandbox_id, key_id) VALUES (?, ?)');
  const ownerOf = db.prepare('SELECT key_id FROM owners WHERE sandbox_id = ?');
  const expire = db.prepare('DELETE FROM events WHERE seq < ?');
  const firstFrom = db.prepare('SELECT seq, at FROM events WHERE seq >= ? ORDER BY seq LIMIT 1');
  const lastSeq = db.prepare('SELECT max(seq) AS seq FROM events');

  /** The first seq recorded at or after `at` (one past the last when none is): a binary search. */
  function seqAt(at: number): number {
    let lo = (firstFrom.get(0) as { seq: number } | undefined)?.seq ?? 1;
    let hi = ((lastSeq.get() as { seq: number | null }).seq ?? lo - 1) + 1;
    while (lo < hi) {
      const row = firstFrom.get(Math.floor((lo + hi) / 2)) as { seq: number; at: number };
      if (row.at < at) lo = row.seq + 1;
      else hi = Math.floor((lo + hi) / 2);
    }
    return lo;
  }
  const expireDropped = db.prepare(
    'DELETE FROM dropped WHERE sandbox_id NOT IN (SELECT DISTINCT sandbox_id FROM events WHERE sandbox_id IS NOT NULL)',
  );
  const expireOwners = db.prepare(
    'DELETE FROM owners WHERE sandbox_id NOT IN (SELECT DISTINCT sandbox_id FROM events WHERE sandbox_id IS NOT NULL)',
  );

  // Per-sandbox counts ('' for records of no sandbox), so that record() needs no COUNT query.
  const counts = new Map<string, number>();
  function recount(): void {
    counts.clear();
    const rows = db
      .prepare('SELECT sandbox_id, count(*) AS n FROM events GROUP BY sandbox_id')
      .all() as Array<{
      sandbox_id: string | null;
      n: number;
    }>;
    for (const r of rows) counts.set(r.sandbox_id ?? '', r.n);
  }

  function applyRetention(): void {
    expire.run(seqAt(now() - opts.retentionMs));
    expireDropped.run();
    expireOwners.run();
    recount();
  }
  applyRetention();
  const retention = setInterval(applyRetention, Math.min(3600_000, opts.retentionMs));
  retention.unref();

  function record(input: AuditInput): number {
    const request = currentRequest();
    const keyId = input.keyId !== undefined ? input.keyId : (request?.keyId ?? null);
    const requestId = input.requestId !== undefined ? input.requestId : (request?.requestId ?? null);
    const result = insert.run(
      now(),
      input.sandboxId,
      input.action,
      input.outcome ?? 'ok',
      keyId,
      requestId,
      bounded(input.fields),
    );
    // Whose the sandbox is, apart from its records: pruning them never hides it from its key.
    if (input.action === 'sandbox.create' && input.sandboxId !== null && keyId !== null)
      addOwner.run(input.sandboxId, keyId);
    const bucket = input.sandboxId ?? '';
    const n = (counts.get(bucket) ?? 0) + 1;
    counts.set(bucket, n);
    if (n > opts.perSandbox) {
      // A tenth at a time: the pruning query (a sort of one sandbox's records) runs once per
      // perSandbox/10 records, not at each one.
      const excess = n - opts.perSandbox + Math.ceil(opts.perSandbox / 10);
      const removed = Number(pruneOldest.run(input.sandboxId, excess).changes);
      addDropped.run(bucket, removed);
      counts.set(bucket, n - removed);
    }
    return Number(result.lastInsertRowid);
  }

  function query(q: AuditQuery): { events: AuditEvent[]; next?: number } {
    const where: string[] = [];
    const args: Array<string | number> = [];
    const add = (clause: string, value: string | number | undefined): void => {
      if (value === undefined) return;
      where.push(clause);
      args.push(value);
    };
    add('sandbox_id = ?', q.sandboxId);
    add('key_id = ?', q.keyId);
    add("action LIKE ? ESCAPE '\\'", q.action === undefined ? undefined : likePrefix(q.action));
    add('seq >= ?', q.since === undefined ? undefined : seqAt(q.since));
    add('seq < ?', q.until === undefined ? undefined : seqAt(q.until + 1));
    add('seq > ?', q.after);
    if (q.visibleTo !== undefined) {
      // Its own calls, its sandboxes' records, and what is nobody's: keyless records of no
      // sandbox or of a sandbox no key created (refused keys, the manager's own sandboxes).
      where.push(
        '(key_id = ? OR sandbox_id IN (SELECT sandbox_id FROM owners WHERE key_id = ?) OR (key_id IS NULL AND (sandbox_id IS NULL OR sandbox_id NOT IN (SELECT sandbox_id FROM owners))))',
      );
      args.push(q.visibleTo, q.visibleTo);
    }
    const limit = Math.min(q.limit ?? MAX_QUERY_LIMIT, MAX_QUERY_LIMIT);
    const sql = `SELECT * FROM events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY seq LIMIT ?`;
    const rows = db.prepare(sql).all(...args, limit + 1) as unknown as Row[];
    const more = rows.length > limit;
    const events = rows.slice(0, limit).map(toEvent);
    return more ? { events, next: events.at(-1)!.seq } : { events };
  }

  return {
    record,
    query,

    /** The id of the key that created a sandbox, as its `sandbox.create` record said. */
    ownerOf(sandboxId: string): string | undefined {
      return (ownerOf.get(sandboxId) as { key_id: string } | undefined)?.key_id;
    },

    /** How many of a sandbox's records were pruned by the per-sandbox bound. */
    dropped(sandboxId: string): number {
      return (droppedOf.get(sandboxId) as { count: number } | undefined)?.count ?? 0;
    },

    /** Runs the retention policy now (it also runs at open and hourly). */
    applyRetention,

    close(): void {
      clearInterval(retention);
      checkpointer.postMessage('close');
      db.exec('PRAGMA wal_checkpoint(PASSIVE)');
      db.close();
    },
  };
}

function likePrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

function toEvent(r: Row): AuditEvent {
  return {
    seq: r.seq,
    at: r.at,
    sandboxId: r.sandbox_id,
    action: r.action,
    outcome: r.outcome,
    keyId: r.key_id,
    requestId: r.request_id,
    fields: JSON.parse(r.fields) as Record<string, AuditValue>,
  };
}
