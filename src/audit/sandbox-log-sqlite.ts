import { DatabaseSync } from 'node:sqlite';
import { boundedEntry, type LogLevel, type SandboxLogEntry } from './sandbox-log.ts';

const schema = `
  CREATE TABLE IF NOT EXISTS lines (
    seq INTEGER PRIMARY KEY,
    sandbox_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    fields TEXT NOT NULL
  ) STRICT;
  CREATE INDEX IF NOT EXISTS lines_sandbox ON lines (sandbox_id, seq);
  CREATE TABLE IF NOT EXISTS gone (
    seq INTEGER PRIMARY KEY,
    sandbox_id TEXT NOT NULL UNIQUE
  ) STRICT;`;

/**
 * The sandbox log of `sandbox-log.ts`, kept in SQLite (`COVE_HOME/sandbox-logs.db`) so that a
 * restart of Cove forgets nothing: the same bounds (the last `perSandbox` lines of each
 * sandbox, the logs of the last `keepGone` stopped ones), written synchronously as the audit
 * trail is (WAL, synchronous=NORMAL). Lines are few (lifecycle, stderr, a start command's
 * output), so each is one insert.
 */
export function openSandboxLog(
  path: string,
  opts: { perSandbox?: number; keepGone?: number; now?: () => number } = {},
) {
  const perSandbox = opts.perSandbox ?? 1000;
  const keepGone = opts.keepGone ?? 100;
  const now = opts.now ?? Date.now;
  const db = new DatabaseSync(path);
  db.exec('PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
  db.exec(schema);
  const insert = db.prepare(
    'INSERT INTO lines (sandbox_id, at, level, message, fields) VALUES (?, ?, ?, ?, ?)',
  );
  const pruneOldest = db.prepare(
    'DELETE FROM lines WHERE seq IN (SELECT seq FROM lines WHERE sandbox_id = ? ORDER BY seq LIMIT ?)',
  );
  const select = db.prepare('SELECT at, level, message, fields FROM lines WHERE sandbox_id = ? ORDER BY seq');
  const markGone = db.prepare('INSERT OR IGNORE INTO gone (sandbox_id) VALUES (?)');
  const oldestGone = db.prepare(
    'SELECT sandbox_id FROM gone ORDER BY seq LIMIT max(0, (SELECT count(*) FROM gone) - ?)',
  );
  const forget = db.prepare('DELETE FROM lines WHERE sandbox_id = ?');
  const unmark = db.prepare('DELETE FROM gone WHERE sandbox_id = ?');

  // Lines per sandbox, so that append() needs no COUNT query.
  const counts = new Map<string, number>();
  for (const r of db.prepare('SELECT sandbox_id, count(*) AS n FROM lines GROUP BY sandbox_id').all())
    counts.set(r.sandbox_id as string, r.n as number);

  function stopped(id: string): void {
    if (!counts.has(id)) return;
    markGone.run(id);
    for (const r of oldestGone.all(keepGone)) {
      const gid = r.sandbox_id as string;
      forget.run(gid);
      unmark.run(gid);
      counts.delete(gid);
    }
  }

  return {
    append(id: string, level: LogLevel, message: string, fields: Record<string, string> = {}): void {
      const e = boundedEntry(now(), level, message, fields);
      insert.run(id, e.timestamp, e.level, e.message, JSON.stringify(e.fields));
      const n = (counts.get(id) ?? 0) + 1;
      counts.set(id, n);
      if (n > perSandbox) {
        // A tenth at a time, so that the delete runs once per perSandbox/10 lines.
        const excess = n - perSandbox + Math.ceil(perSandbox / 10);
        counts.set(id, n - Number(pruneOldest.run(id, excess).changes));
      }
    },

    /** Oldest first; undefined for a sandbox never logged (or forgotten). */
    entries(id: string): SandboxLogEntry[] | undefined {
      if (!counts.has(id)) return undefined;
      return select.all(id).map((r) => ({
        timestamp: r.at as number,
        level: r.level as LogLevel,
        message: r.message as string,
        fields: JSON.parse(r.fields as string) as Record<string, string>,
      }));
    },

    stopped,

    /**
     * After a restart: a sandbox with a log that is not among `live` stopped while Cove was
     * down (or its stop was never logged), so its log counts against `keepGone` too.
     */
    reconcile(live: Iterable<string>): void {
      const running = new Set(live);
      const gone = new Set(
        db
          .prepare('SELECT sandbox_id FROM gone')
          .all()
          .map((r) => r.sandbox_id as string),
      );
      for (const id of [...counts.keys()]) if (!running.has(id) && !gone.has(id)) stopped(id);
    },

    close(): void {
      db.close();
    },
  };
}
