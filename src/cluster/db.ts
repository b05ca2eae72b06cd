/**
 * The little the cluster store needs from a SQL database, so that one set of statements
 * (store.ts) runs on both engines: `?` placeholders (rewritten to `$n` for PostgreSQL),
 * rows as plain objects, integers as numbers, and transactions.
 */
export interface Db {
  readonly dialect: 'sqlite' | 'postgres';
  query<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  /** A write; the number of rows it changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /**
   * Runs `fn` in one transaction: committed when it resolves, rolled back when it throws.
   * SQLite: BEGIN IMMEDIATE (one writer at a time). PostgreSQL: READ COMMITTED, so the
   * statements of a transaction are written to be correct under it (conditional updates,
   * ON CONFLICT), and `lock(n)` serialises what must not interleave.
   */
  tx<T>(fn: (db: TxDb) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

export type TxDb = Pick<Db, 'query' | 'run' | 'dialect'> & {
  /** A lock held until the transaction ends (PostgreSQL advisory lock; SQLite's write lock already is one). */
  lock(key: number): Promise<void>;
};

export type SqlValue = string | number | null;

/** `?` → `$1, $2, …` (the statements in this folder never put a `?` inside a string literal). */
export function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}
