import { DatabaseSync } from 'node:sqlite';
import { CoveError } from '../core/errors.ts';
import type { SandboxNetwork } from '../network/egress-policy.ts';
import {
  snapshotsTable,
  sqliteSnapshots,
  SQLITE_CONSTRAINT_PRIMARYKEY,
  SQLITE_CONSTRAINT_UNIQUE,
} from './sqlite-snapshots.ts';
import { sealOldRows, type StoreCodecs } from './sqlite-sealing.ts';
import type { ApiKeyRecord, SandboxRecord, Store } from './store.ts';

const migrations = [
  `CREATE TABLE sandboxes (
     id TEXT PRIMARY KEY,
     template_name TEXT NOT NULL,
     template_hash TEXT NOT NULL,
     state TEXT NOT NULL,
     slot INTEGER NOT NULL UNIQUE,
     agent_token TEXT NOT NULL,
     limits TEXT NOT NULL,
     metadata TEXT NOT NULL,
     env_vars TEXT NOT NULL,
     started_at INTEGER NOT NULL,
     end_at INTEGER NOT NULL
   ) STRICT`,
  `ALTER TABLE sandboxes ADD COLUMN envd_access_token TEXT`,
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     mask TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     last_used_at INTEGER
   ) STRICT`,
  `ALTER TABLE sandboxes ADD COLUMN runtime TEXT`,
  `ALTER TABLE sandboxes ADD COLUMN network TEXT; ALTER TABLE sandboxes ADD COLUMN traffic_access_token TEXT`,
  `ALTER TABLE sandboxes ADD COLUMN lifecycle TEXT`,
  `ALTER TABLE sandboxes ADD COLUMN paused TEXT`,
  snapshotsTable,
  `ALTER TABLE sandboxes ADD COLUMN volume_mounts TEXT`,
  `ALTER TABLE api_keys ADD COLUMN created_by TEXT`,
  `ALTER TABLE snapshots ADD COLUMN volume_mounts TEXT`,
];

interface Row {
  id: string;
  template_name: string;
  template_hash: string;
  state: string;
  slot: number;
  agent_token: string;
  envd_access_token: string | null;
  runtime: string | null;
  network: string | null;
  traffic_access_token: string | null;
  limits: string;
  metadata: string;
  env_vars: string;
  started_at: number;
  end_at: number;
  lifecycle: string | null;
  paused: string | null;
  volume_mounts: string | null;
}

interface KeyRow {
  id: string;
  name: string;
  hash: string;
  mask: string;
  created_at: number;
  last_used_at: number | null;
  created_by: string | null;
}

/**
 * The embedded store: Node's built-in SQLite (no native addon to build), WAL journal with
 * synchronous=NORMAL, which survives a crash of Cove (not of the host's power) at a fraction
 * of FULL's cost. Statements are synchronous: each write is on disk before the call returns.
 * Several processes may share the file (`cove serve` and `cove keys`): WAL lets readers run
 * beside the one writer, and busy_timeout makes a writer wait for the other instead of failing.
 */
export function createSqliteStore(path: string, opts: StoreCodecs = {}): Store {
  const db = new DatabaseSync(path);
  // busy_timeout first: switching to WAL needs a lock another process may hold.
  db.exec('PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;');
  migrate(db);
  sealOldRows(db, opts);
  const codec = opts.network;
  const networkJson = (n: SandboxNetwork) => JSON.stringify(codec ? codec.seal(n) : n);
  const seal = (token: string) => (opts.tokens ? opts.tokens.seal(token) : token);
  const open = (token: string | null) => (token !== null && opts.tokens ? opts.tokens.open(token) : token);
  const read = (row: Row): SandboxRecord => {
    const opened = {
      ...row,
      agent_token: open(row.agent_token)!,
      envd_access_token: open(row.envd_access_token),
      traffic_access_token: open(row.traffic_access_token),
    };
    const record = fromRow(opened);
    return codec && record.network ? { ...record, network: codec.open(record.network) } : record;
  };

  const insert = db.prepare(
    `INSERT INTO sandboxes (id, template_name, template_hash, state, slot, agent_token, envd_access_token, limits, metadata, env_vars, started_at, end_at, runtime, network, traffic_access_token, lifecycle, volume_mounts)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const slots = db.prepare('SELECT slot FROM sandboxes ORDER BY slot');
  const byId = db.prepare('SELECT * FROM sandboxes WHERE id = ?');
  const all = db.prepare('SELECT * FROM sandboxes ORDER BY started_at');
  const remove = db.prepare('DELETE FROM sandboxes WHERE id = ?');
  const insertKey = db.prepare(
    'INSERT INTO api_keys (id, name, hash, mask, created_at, last_used_at, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const keyByHash = db.prepare('SELECT * FROM api_keys WHERE hash = ?');
  const allKeys = db.prepare('SELECT * FROM api_keys ORDER BY created_at, id');
  const touchKey = db.prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?');
  const removeKey = db.prepare('DELETE FROM api_keys WHERE id = ?');

  return {
    insertSandbox(record, maxSlots) {
      db.exec('BEGIN IMMEDIATE');
      try {
        let slot = 0;
        for (const row of slots.all() as Array<{ slot: number }>) {
          if (row.slot !== slot) break;
          slot++;
        }
        if (slot >= maxSlots)
          throw new CoveError('resource_exhausted', `all ${maxSlots} sandbox slots are in use`);
        if (byId.get(record.id)) throw new CoveError('already_exists', `sandbox ${record.id} already exists`);
        insert.run(
          record.id,
          record.templateName,
          record.templateHash,
          record.state,
          slot,
          seal(record.agentToken),
          record.envdAccessToken !== undefined ? seal(record.envdAccessToken) : null,
          JSON.stringify(record.limits),
          JSON.stringify(record.metadata),
          JSON.stringify(record.envVars),
          record.startedAt,
          record.endAt,
          record.runtime ?? null,
          record.network ? networkJson(record.network) : null,
          record.trafficAccessToken !== undefined ? seal(record.trafficAccessToken) : null,
          record.lifecycle ? JSON.stringify(record.lifecycle) : null,
          record.volumeMounts?.length ? JSON.stringify(record.volumeMounts) : null,
        );
        db.exec('COMMIT');
        return { ...record, slot };
      } catch (err) {
        db.exec('ROLLBACK');
        throw err;
      }
    },

    getSandbox(id) {
      const row = byId.get(id) as Row | undefined;
      return row && read(row);
    },

    listSandboxes() {
      return (all.all() as unknown as Row[]).map(read);
    },

    updateSandbox(id, patch) {
      const sets: string[] = [];
      const values: Array<string | number | null> = [];
      const set = (column: string, value: string | number | null) => {
        sets.push(`${column} = ?`);
        values.push(value);
      };
      if (patch.state !== undefined) set('state', patch.state);
      if (patch.endAt !== undefined) set('end_at', patch.endAt);
      if (patch.metadata !== undefined) set('metadata', JSON.stringify(patch.metadata));
      if (patch.envVars !== undefined) set('env_vars', JSON.stringify(patch.envVars));
      if (patch.startedAt !== undefined) set('started_at', patch.startedAt);
      if (patch.envdAccessToken !== undefined) set('envd_access_token', seal(patch.envdAccessToken));
      if (patch.network !== undefined) set('network', networkJson(patch.network));
      if (patch.trafficAccessToken !== undefined) set('traffic_access_token', seal(patch.trafficAccessToken));
      if (patch.paused !== undefined) set('paused', patch.paused);
      if (patch.lifecycle !== undefined) set('lifecycle', JSON.stringify(patch.lifecycle));
      if (sets.length === 0) return;
      const result = db.prepare(`UPDATE sandboxes SET ${sets.join(', ')} WHERE id = ?`).run(...values, id);
      if (result.changes === 0) throw new CoveError('not_found', `sandbox ${id} not found`);
    },

    deleteSandbox(id) {
      remove.run(id);
    },

    ...sqliteSnapshots(db),

    insertApiKey(key) {
      try {
        insertKey.run(
          key.id,
          key.name,
          key.hash,
          key.mask,
          key.createdAt,
          key.lastUsedAt ?? null,
          key.createdBy ?? null,
        );
      } catch (err) {
        const code = (err as { errcode?: number }).errcode;
        if (code === SQLITE_CONSTRAINT_UNIQUE || code === SQLITE_CONSTRAINT_PRIMARYKEY)
          throw new CoveError('already_exists', `API key ${key.id} already exists`, { cause: err });
        throw err;
      }
    },

    apiKeyByHash(hash) {
      const row = keyByHash.get(hash) as KeyRow | undefined;
      return row && keyFromRow(row);
    },

    listApiKeys() {
      return (allKeys.all() as unknown as KeyRow[]).map(keyFromRow);
    },

    touchApiKey(id, at) {
      touchKey.run(at, id);
    },

    deleteApiKey(id) {
      return removeKey.run(id).changes > 0;
    },

    close() {
      db.close();
    },
  };
}

/** Applies the migrations this file lacks. Each one re-reads the version inside its write
 * transaction, so that two processes opening a fresh file never apply one twice. */
function migrate(db: DatabaseSync): void {
  for (;;) {
    db.exec('BEGIN IMMEDIATE');
    try {
      const { user_version: v } = db.prepare('PRAGMA user_version').get() as { user_version: number };
      if (v >= migrations.length) {
        db.exec('COMMIT');
        return;
      }
      db.exec(`${migrations[v]}; PRAGMA user_version = ${v + 1};`);
      db.exec('COMMIT');
    } catch (err) {
      db.exec('ROLLBACK');
      throw err;
    }
  }
}

function keyFromRow(row: KeyRow): ApiKeyRecord {
  return {
    id: row.id,
    name: row.name,
    hash: row.hash,
    mask: row.mask,
    createdAt: row.created_at,
    ...(row.last_used_at !== null && { lastUsedAt: row.last_used_at }),
    ...(row.created_by !== null && { createdBy: row.created_by }),
  };
}

function fromRow(row: Row): SandboxRecord {
  return {
    id: row.id,
    templateName: row.template_name,
    templateHash: row.template_hash,
    state: row.state as SandboxRecord['state'],
    slot: row.slot,
    agentToken: row.agent_token,
    ...(row.envd_access_token !== null && { envdAccessToken: row.envd_access_token }),
    ...(row.runtime !== null && { runtime: row.runtime }),
    ...(row.network !== null && { network: JSON.parse(row.network) as SandboxNetwork }),
    ...(row.traffic_access_token !== null && { trafficAccessToken: row.traffic_access_token }),
    limits: JSON.parse(row.limits) as SandboxRecord['limits'],
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    envVars: JSON.parse(row.env_vars) as Record<string, string>,
    startedAt: row.started_at,
    endAt: row.end_at,
    ...(row.lifecycle !== null && { lifecycle: JSON.parse(row.lifecycle) as SandboxRecord['lifecycle'] }),
    ...(row.paused !== null && { paused: row.paused as NonNullable<SandboxRecord['paused']> }),
    ...(row.volume_mounts !== null && {
      volumeMounts: JSON.parse(row.volume_mounts) as NonNullable<SandboxRecord['volumeMounts']>,
    }),
  };
}
