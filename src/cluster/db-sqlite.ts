import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import type { Db, SqlValue, TxDb } from './db.ts';

/**
 * The cluster store on Node's built-in SQLite: `cove api` on one machine without a
 * database server, and the second engine the store's tests run on. Calls are synchronous
 * underneath; a transaction holds SQLite's write lock (BEGIN IMMEDIATE) and, since nothing
 * else may run on this connection meanwhile, transactions of this process queue in turn.
 */
export function openSqliteDb(path: string): Db {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
  const params = (p: readonly SqlValue[]) => p as SQLInputValue[];
  const inner: TxDb = {
    dialect: 'sqlite',
    query: <T>(sql: string, p: readonly SqlValue[] = []) =>
      Promise.resolve(db.prepare(sql).all(...params(p)) as T[]),
    run: (sql: string, p: readonly SqlValue[] = []) =>
      Promise.resolve(Number(db.prepare(sql).run(...params(p)).changes)),
    lock: () => Promise.resolve(),
  };
  let queue: Promise<unknown> = Promise.resolve();
  return {
    dialect: 'sqlite',
    query: inner.query,
    run: inner.run,
    tx<T>(fn: (tx: TxDb) => Promise<T>): Promise<T> {
      const next = queue.then(async () => {
        db.exec('BEGIN IMMEDIATE');
        try {
          const result = await fn(inner);
          db.exec('COMMIT');
          return result;
        } catch (err) {
          db.exec('ROLLBACK');
          throw err;
        }
      });
      queue = next.catch(() => undefined);
      return next;
    },
    close() {
      db.close();
      return Promise.resolve();
    },
  };
}
