import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { DatabaseSync } from 'node:sqlite';
import { CoveError } from '../../core/errors.ts';
import { newSandboxId } from '../../core/ids.ts';
import type { Logger } from '../../core/log.ts';
import { createQuotas } from './limits.ts';
import { holder } from './quota.ts';
import { collect, externalServer, managedServer, type PgServer } from './server.ts';

/** One agent's database, as `GET /databases` shows it. */
export interface DatabaseRecord {
  id: string;
  name: string;
  /** The API key id that created it: only that key sees, uses or deletes it. */
  owner: string;
  createdAt: string;
  /** The size limit (bytes), past which the database is frozen (quota.ts). */
  maxBytes: number;
  /** Past its limit: reads, DELETE and TRUNCATE only. */
  frozen: boolean;
  /** Frozen and still growing: its role cannot log in until the limit is raised. */
  locked: boolean;
}

/** A name a key gives its database; never reaches SQL (the server's objects are named by id). */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
const ID = /^[a-z][a-z0-9]{19}$/;
/** The database and its only role share one name: `pg_hba`'s `sameuser` then ties them. */
const pgName = (id: string) => `db_${id}`;
/** Connections per database role: one agent cannot take the server's 100 slots. */
const CONNECTION_LIMIT = 32;

export interface DatabasesOptions {
  home: string;
  /** The bridge's host address, where sandboxes reach the server (`<subnet>.0.1`). */
  address: string;
  /** The sandboxes' /16 (`10.11.0.0/16`): the only network the server accepts roles from. */
  subnet: string;
  port: number;
  /** Derives each role's password (an HMAC of its id), so that no password is stored. */
  secret: Buffer;
  log: Logger;
  /** An operator's server (admin URL) instead of Cove's own cluster. */
  externalUrl?: string;
  /** The default and largest size limit of a database, in MiB. */
  maxSizeMB: number;
  /** How often sizes are checked (ms). */
  checkMs: number;
}

/**
 * Agents' PostgreSQL databases on a cluster Cove runs under `<home>/postgres` (cluster.ts),
 * started on the first create, or at Cove's start when databases exist. Each database has one
 * role of the same name: LOGIN with a password only Cove can derive, no superuser, createrole,
 * createdb, replication or bypassrls, the database's owner; CONNECT revoked from PUBLIC on
 * every database, and pg_hba admits a role from the sandboxes' network to its own database
 * only (`sameuser`). Records are in `<home>/databases.db`; the server's databases are the truth
 * of what exists: `start()` drops the `db_*` databases and roles that have no record (a crash
 * between the two), and a record is deleted before its database, so none can be left half.
 */
export function createDatabases(opts: DatabasesOptions) {
  const records = new DatabaseSync(join(opts.home, 'databases.db'));
  records.exec(`PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS databases (
      id TEXT PRIMARY KEY, owner TEXT NOT NULL, name TEXT NOT NULL, created_at TEXT NOT NULL,
      UNIQUE (owner, name));
    CREATE TABLE IF NOT EXISTS creating (id TEXT PRIMARY KEY)`);
  const columns = records
    .prepare('PRAGMA table_info(databases)')
    .all()
    .map((c) => String(c.name));
  if (!columns.includes('max_bytes'))
    records.exec(`ALTER TABLE databases ADD COLUMN max_bytes INTEGER;
      ALTER TABLE databases ADD COLUMN frozen INTEGER NOT NULL DEFAULT 0`);
  if (!columns.includes('frozen_bytes'))
    records.exec('ALTER TABLE databases ADD COLUMN frozen_bytes INTEGER');
  const server: PgServer = opts.externalUrl
    ? externalServer(opts.externalUrl)
    : managedServer({
        dir: join(opts.home, 'postgres'),
        address: opts.address,
        subnet: opts.subnet,
        port: opts.port,
      });
  const defaultMax = opts.maxSizeMB * 2 ** 20;
  let prepared: Promise<void> | undefined;
  let superuser = true;

  /** The server running; on Cove's own, PUBLIC's CONNECT taken from the databases every cluster has. */
  function ready(): Promise<void> {
    prepared ??= server
      .start()
      .then(async () => {
        superuser = (await server.sql('SELECT rolsuper FROM pg_roles WHERE rolname = current_user')) === 't';
        if (!server.external) await server.sql('REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC;');
      })
      .catch((err: unknown) => {
        prepared = undefined;
        throw err;
      });
    return prepared;
  }

  const password = (id: string) => createHmac('sha256', opts.secret).update(`database\0${id}`).digest('hex');

  const row = (r: Record<string, unknown>): DatabaseRecord => ({
    id: String(r.id),
    name: String(r.name),
    owner: String(r.owner),
    createdAt: String(r.created_at),
    maxBytes: r.max_bytes === null || r.max_bytes === undefined ? defaultMax : Number(r.max_bytes),
    frozen: Number(r.frozen) >= 1,
    locked: Number(r.frozen) === 2,
  });

  function list(owner: string): DatabaseRecord[] {
    return records
      .prepare('SELECT * FROM databases WHERE owner = ? ORDER BY created_at, name')
      .all(owner)
      .map(row);
  }

  /** By id or by name, for its owner only: another key's database is not found. */
  function get(owner: string, ref: string): DatabaseRecord {
    const r = records
      .prepare('SELECT * FROM databases WHERE owner = ? AND (id = ? OR name = ?)')
      .get(owner, ref, ref);
    if (!r) throw new CoveError('not_found', `database ${ref} not found`);
    return row(r);
  }

  /** The URL a sandbox connects with: the role's password, the server on the bridge address. */
  function url(db: DatabaseRecord): string {
    const n = pgName(db.id);
    return `postgresql://${n}:${password(db.id)}@${opts.address}:${opts.port}/${n}`;
  }

  const quotas = createQuotas({
    server,
    records,
    log: opts.log,
    name: pgName,
    ready,
    superuser: () => superuser,
  });

  return {
    server,
    /** databases.db, where access.ts keeps its grants beside the records. */
    records,
    list,
    get,
    url,
    /** The role a sandbox of this database connects as (the forwarder lets only it through). */
    role: (databaseId: string) => pgName(databaseId),
    /** Size and state, asked of the server. */
    size: async (db: DatabaseRecord) => (await quotas.sizes([db.id])).get(db.id),

    exists(id: string): boolean {
      return records.prepare('SELECT 1 FROM databases WHERE id = ?').get(id) !== undefined;
    },

    /** Starts the server when databases exist, drops what a crash left on it, then checks sizes every `checkMs`. */
    async start(): Promise<void> {
      quotas.every(opts.checkMs);
      const count = records.prepare('SELECT count(*) AS n FROM databases').get() as { n: number };
      const pending = records
        .prepare('SELECT id FROM creating')
        .all()
        .map((r) => String(r.id));
      if (count.n === 0 && pending.length === 0) return;
      await ready();
      const known = new Set(
        records
          .prepare('SELECT id FROM databases')
          .all()
          .map((r) => pgName(String(r.id))),
      );
      // An operator's server may hold others' databases: only the ones Cove began are its to drop.
      const onServer = server.external
        ? pending.map(pgName)
        : (
            await server.sql(
              `SELECT datname FROM pg_database WHERE datname ~ '^db_[a-z0-9]{20}$'
               UNION SELECT rolname FROM pg_roles WHERE rolname ~ '^db_[a-z0-9]{20}$'`,
            )
          ).split('\n');
      for (const n of new Set(onServer.filter(Boolean)))
        if (!known.has(n)) {
          opts.log.info({ database: n }, 'dropping a database that has no record (a crash)');
          await drop(n);
        }
      records.exec('DELETE FROM creating');
    },

    async create(owner: string, name: string, maxSizeMB?: number): Promise<DatabaseRecord> {
      if (!NAME.test(name))
        throw new CoveError(
          'invalid_argument',
          'name: 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit',
        );
      if (
        maxSizeMB !== undefined &&
        (!Number.isInteger(maxSizeMB) || maxSizeMB < 1 || maxSizeMB > opts.maxSizeMB)
      )
        throw new CoveError('invalid_argument', `maxSizeMB: a whole number from 1 to ${opts.maxSizeMB}`);
      if (list(owner).some((d) => d.name === name))
        throw new CoveError('already_exists', `a database named ${name} already exists`);
      await ready();
      const id = newSandboxId();
      const n = pgName(id);
      records.prepare('INSERT INTO creating (id) VALUES (?)').run(id);
      // Names are [a-z0-9_] and the password hex, so they are safe in SQL as written.
      // CREATE DATABASE cannot run in a transaction: a failure half-way leaves a role or a
      // database without a record, which drop() below (or start() after a crash) removes.
      // A non-superuser admin must be a member of the role to make it a database's owner.
      try {
        await server.sql(
          `CREATE ROLE ${n} LOGIN PASSWORD '${password(id)}' NOSUPERUSER NOCREATEDB NOCREATEROLE
             NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${CONNECTION_LIMIT};
           ${superuser ? '' : `GRANT ${n} TO CURRENT_USER;`}
           CREATE DATABASE ${n} OWNER ${n};
           REVOKE ALL ON DATABASE ${n} FROM PUBLIC;`,
        );
      } catch (err) {
        await drop(n).catch(() => {});
        records.prepare('DELETE FROM creating WHERE id = ?').run(id);
        throw err;
      }
      const maxBytes = (maxSizeMB ?? opts.maxSizeMB) * 2 ** 20;
      const record: DatabaseRecord = {
        id,
        name,
        owner,
        createdAt: new Date().toISOString(),
        maxBytes,
        frozen: false,
        locked: false,
      };
      try {
        records
          .prepare('INSERT INTO databases (id, owner, name, created_at, max_bytes) VALUES (?, ?, ?, ?, ?)')
          .run(id, owner, name, record.createdAt, maxBytes);
      } catch (err) {
        await drop(n).catch(() => {});
        throw new CoveError('already_exists', `a database named ${name} already exists`, { cause: err });
      } finally {
        records.prepare('DELETE FROM creating WHERE id = ?').run(id);
      }
      return record;
    },

    /** A new size limit: checked at once (a database under it again is thawed). */
    async setLimit(owner: string, ref: string, maxSizeMB: number): Promise<DatabaseRecord> {
      const db = get(owner, ref);
      checkLimit(maxSizeMB);
      records.prepare('UPDATE databases SET max_bytes = ? WHERE id = ?').run(maxSizeMB * 2 ** 20, db.id);
      await quotas.checkNow();
      return get(owner, db.id);
    },

    /** Removes the record, then the database (its connections ended) and its role. */
    async delete(owner: string, ref: string): Promise<void> {
      const db = get(owner, ref);
      records.prepare('DELETE FROM databases WHERE id = ?').run(db.id);
      await ready();
      await drop(pgName(db.id));
    },

    /** `pg_dump`: plain SQL, or pg_restore's custom format (what restore takes); no owners or grants. */
    async backup(owner: string, ref: string, format: 'plain' | 'custom' = 'plain'): Promise<Readable> {
      const db = get(owner, ref);
      await ready();
      const child = server.spawn(
        'pg_dump',
        ['--no-owner', '--no-privileges', `--format=${format}`],
        pgName(db.id),
      );
      child.stdin.end();
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 4096)));
      child.on('close', (code) => {
        if (code !== 0) {
          opts.log.error({ database: db.id, code, stderr: err.trim() }, 'pg_dump failed');
          child.stdout.destroy(new CoveError('internal', `pg_dump failed: ${err.trim()}`));
        }
      });
      return child.stdout;
    },

    /**
     * Restores a custom-format archive (`backup(…, 'custom')`) with pg_restore, connected as the
     * database's own role (the archive's SQL can do nothing its sandboxes could not), in one
     * transaction: the objects the archive holds are replaced, others stay; any error leaves
     * the database as it was. Plain SQL is refused: feeding it to psql would run its
     * backslash commands (`\!`) on Cove's host.
     */
    async restore(owner: string, ref: string, archive: Readable): Promise<void> {
      const db = get(owner, ref);
      if (db.frozen) throw new CoveError('resource_exhausted', `database ${db.name} ${QUOTA_BLOCK}`);
      await ready();
      const n = pgName(db.id);
      const child = server.spawn(
        'pg_restore',
        [
          '--no-owner',
          '--no-privileges',
          '--clean',
          '--if-exists',
          '--single-transaction',
          '--exit-on-error',
          '-d',
          n,
        ],
        n,
        { user: n, password: password(db.id) },
      );
      const done = collect(child);
      let head = true;
      for await (const chunk of archive) {
        const bytes = chunk as Buffer;
        if (head && !bytes.subarray(0, 5).equals(Buffer.from('PGDMP'))) {
          child.kill();
          await done.catch(() => {});
          throw new CoveError(
            'invalid_argument',
            'restore takes a custom-format archive (GET /databases/<name>/backup?format=custom), not plain SQL',
          );
        }
        head = false;
        if (!child.stdin.write(bytes)) await new Promise((r) => child.stdin.once('drain', r));
      }
      child.stdin.end();
      await done.catch((err: unknown) => {
        throw new CoveError('invalid_argument', `restore failed, nothing changed: ${(err as Error).message}`);
      });
    },

    close(): void {
      quotas.stop();
      records.close();
    },
  };

  function checkLimit(maxSizeMB: number): void {
    if (!Number.isInteger(maxSizeMB) || maxSizeMB < 1 || maxSizeMB > opts.maxSizeMB)
      throw new CoveError('invalid_argument', `maxSizeMB: a whole number from 1 to ${opts.maxSizeMB}`);
  }

  async function drop(n: string): Promise<void> {
    await server.sql(
      `DROP DATABASE IF EXISTS ${n} WITH (FORCE); DROP ROLE IF EXISTS ${n}; DROP ROLE IF EXISTS ${holder(n)};`,
    );
  }
}

const QUOTA_BLOCK = 'is over its size limit: free space first (DELETE or TRUNCATE)';

export type Databases = ReturnType<typeof createDatabases>;

export const isDatabaseId = (s: string) => ID.test(s);
