import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { DatabaseSync } from 'node:sqlite';
import { CoveError } from '../../core/errors.ts';
import { newSandboxId } from '../../core/ids.ts';
import type { Logger } from '../../core/log.ts';
import { createCluster, type Cluster } from './cluster.ts';

/** One agent's database, as `GET /databases` shows it. */
export interface DatabaseRecord {
  id: string;
  name: string;
  /** The API key id that created it: only that key sees, uses or deletes it. */
  owner: string;
  createdAt: string;
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
      UNIQUE (owner, name))`);
  const cluster: Cluster = createCluster({
    dir: join(opts.home, 'postgres'),
    port: opts.port,
    listen: [opts.address],
    hba: [`host sameuser all ${opts.subnet} scram-sha-256`],
    settings: { max_connections: 200, log_connections: 'on' },
  });
  let prepared: Promise<void> | undefined;

  /** The cluster running, with PUBLIC's CONNECT taken from the databases every cluster has. */
  function ready(): Promise<void> {
    prepared ??= cluster
      .sql('REVOKE ALL ON DATABASE postgres, template1 FROM PUBLIC;')
      .then(() => undefined)
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

  return {
    cluster,
    /** databases.db, where access.ts keeps its grants beside the records. */
    records,
    list,
    get,
    url,

    exists(id: string): boolean {
      return records.prepare('SELECT 1 FROM databases WHERE id = ?').get(id) !== undefined;
    },

    /** Starts the cluster when databases exist and drops what a crash left on the server. */
    async start(): Promise<void> {
      const count = records.prepare('SELECT count(*) AS n FROM databases').get() as { n: number };
      if (count.n === 0) return;
      await ready();
      const known = new Set(
        records
          .prepare('SELECT id FROM databases')
          .all()
          .map((r) => pgName(String(r.id))),
      );
      const onServer = await cluster.sql(
        `SELECT datname FROM pg_database WHERE datname ~ '^db_[a-z0-9]{20}$'
         UNION SELECT rolname FROM pg_roles WHERE rolname ~ '^db_[a-z0-9]{20}$'`,
      );
      for (const n of new Set(onServer.split('\n').filter(Boolean)))
        if (!known.has(n)) {
          opts.log.info({ database: n }, 'dropping a database that has no record (a crash)');
          await drop(n);
        }
    },

    async create(owner: string, name: string): Promise<DatabaseRecord> {
      if (!NAME.test(name))
        throw new CoveError(
          'invalid_argument',
          'name: 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit',
        );
      if (list(owner).some((d) => d.name === name))
        throw new CoveError('already_exists', `a database named ${name} already exists`);
      await ready();
      const id = newSandboxId();
      const n = pgName(id);
      // Names are [a-z0-9_] and the password hex, so they are safe in SQL as written.
      // CREATE DATABASE cannot run in a transaction: a failure half-way leaves a role or a
      // database without a record, which drop() below (or start() after a crash) removes.
      try {
        await cluster.sql(
          `CREATE ROLE ${n} LOGIN PASSWORD '${password(id)}' NOSUPERUSER NOCREATEDB NOCREATEROLE
             NOREPLICATION NOBYPASSRLS CONNECTION LIMIT ${CONNECTION_LIMIT};
           CREATE DATABASE ${n} OWNER ${n};
           REVOKE ALL ON DATABASE ${n} FROM PUBLIC;`,
        );
      } catch (err) {
        await drop(n).catch(() => {});
        throw err;
      }
      const record: DatabaseRecord = { id, name, owner, createdAt: new Date().toISOString() };
      try {
        records
          .prepare('INSERT INTO databases (id, owner, name, created_at) VALUES (?, ?, ?, ?)')
          .run(id, owner, name, record.createdAt);
      } catch (err) {
        await drop(n).catch(() => {});
        throw new CoveError('already_exists', `a database named ${name} already exists`, { cause: err });
      }
      return record;
    },

    /** Removes the record, then the database (its connections ended) and its role. */
    async delete(owner: string, ref: string): Promise<void> {
      const db = get(owner, ref);
      records.prepare('DELETE FROM databases WHERE id = ?').run(db.id);
      await drop(pgName(db.id));
    },

    /** `pg_dump` of the database as plain SQL (no owners or grants: restorable into any database). */
    async backup(owner: string, ref: string): Promise<Readable> {
      const db = get(owner, ref);
      await ready();
      const args = ['-h', cluster.socketDir, '-p', String(opts.port), '-U', 'postgres'];
      const child = spawn(cluster.bin('pg_dump'), [...args, '--no-owner', '--no-privileges', pgName(db.id)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
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

    close(): void {
      records.close();
    },
  };

  async function drop(n: string): Promise<void> {
    await cluster.sql(`DROP DATABASE IF EXISTS ${n} WITH (FORCE); DROP ROLE IF EXISTS ${n};`);
  }
}

export type Databases = ReturnType<typeof createDatabases>;

export const isDatabaseId = (s: string) => ID.test(s);
