import pg from 'pg';
import type { Logger } from '../core/log.ts';
import { numbered, type Db, type SqlValue, type TxDb } from './db.ts';

// BIGINT (int8) columns hold epoch milliseconds: well inside a double's exact range.
pg.types.setTypeParser(pg.types.builtins.INT8, (text) => Number(text));

/** Errors after which the same statement may succeed on a new connection: the server went
 * away or is starting (a restart or failover), not a fault of the statement. */
const TRANSIENT = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'EPIPE',
  '57P01',
  '57P02',
  '57P03',
  '08000',
  '08003',
  '08006',
  '08001',
  '08004',
]);

function transient(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  if (e.code !== undefined && TRANSIENT.has(e.code)) return true;
  return /Connection terminated|connection timeout|Client has encountered a connection error/i.test(
    e.message ?? '',
  );
}

/**
 * The cluster store on PostgreSQL through `pg` (node-postgres: the most used client, pure
 * JavaScript, a pool that replaces broken connections). A statement or transaction that
 * fails because the server is gone is retried on a new connection for up to `retryMs`, so
 * a restart of PostgreSQL is a pause, not an error (a transaction is retried whole: its
 * first attempt was rolled back with its connection).
 */
export function openPostgresDb(url: string, opts: { log?: Logger; retryMs?: number; max?: number } = {}): Db {
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 8, connectionTimeoutMillis: 5_000 });
  // An idle connection whose server went away: the pool drops it; without a listener the
  // error would end the process.
  pool.on('error', (err) => opts.log?.warn({ err }, 'PostgreSQL connection lost'));
  const retryMs = opts.retryMs ?? 30_000;

  async function retrying<T>(fn: () => Promise<T>): Promise<T> {
    const until = Date.now() + retryMs;
    for (let delay = 50; ; delay = Math.min(delay * 2, 1_000)) {
      try {
        return await fn();
      } catch (err) {
        if (!transient(err) || Date.now() + delay > until) throw err;
        opts.log?.debug({ err }, 'PostgreSQL unavailable; retrying');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  const on = (q: pg.Pool | pg.PoolClient): Omit<TxDb, 'lock'> => ({
    dialect: 'postgres',
    query: async <T>(sql: string, p: readonly SqlValue[] = []) =>
      (await q.query(numbered(sql), p as SqlValue[])).rows as T[],
    run: async (sql: string, p: readonly SqlValue[] = []) =>
      (await q.query(numbered(sql), p as SqlValue[])).rowCount ?? 0,
  });
  const direct = on(pool);

  return {
    dialect: 'postgres',
    query: (sql, p) => retrying(() => direct.query(sql, p)),
    run: (sql, p) => retrying(() => direct.run(sql, p)),
    tx: (fn) =>
      retrying(async () => {
        const client = await pool.connect();
        // The server going away mid-transaction (a restart) is an 'error' event on the checked-out
        // client as well as a failed query: unheard, the event would end the process.
        const lost = (err: Error) => opts.log?.warn({ err }, 'PostgreSQL connection lost in a transaction');
        client.on('error', lost);
        let broken = false;
        try {
          await client.query('BEGIN');
          const tx: TxDb = {
            ...on(client),
            lock: async (key) => void (await client.query('SELECT pg_advisory_xact_lock($1)', [key])),
          };
          const result = await fn(tx);
          await client.query('COMMIT');
          return result;
        } catch (err) {
          broken = transient(err);
          if (!broken) await client.query('ROLLBACK').catch(() => undefined);
          throw err;
        } finally {
          client.removeListener('error', lost);
          client.release(broken);
        }
      }),
    close: () => pool.end(),
  };
}
