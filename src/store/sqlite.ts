import { DatabaseSync } from 'node:sqlite';
import { CoveError } from '../core/errors.ts';
import type { SandboxRecord, Store } from './store.ts';

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
];

interface Row {
  id: string;
  template_name: string;
  template_hash: string;
  state: string;
  slot: number;
  agent_token: string;
  envd_access_token: string | null;
  limits: string;
  metadata: string;
  env_vars: string;
  started_at: number;
  end_at: number;
}

/**
 * The embedded store: Node's built-in SQLite (no native addon to build), WAL journal with
 * synchronous=NORMAL, which survives a crash of Cove (not of the host's power) at a fraction
 * of FULL's cost. Statements are synchronous: each write is on disk before the call returns.
 */
export function createSqliteStore(path: string): Store {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
  const { user_version: version } = db.prepare('PRAGMA user_version').get() as { user_version: number };
  for (let v = version; v < migrations.length; v++) {
    db.exec(`BEGIN; ${migrations[v]}; PRAGMA user_version = ${v + 1}; COMMIT;`);
  }

  const insert = db.prepare(
    `INSERT INTO sandboxes (id, template_name, template_hash, state, slot, agent_token, envd_access_token, limits, metadata, env_vars, started_at, end_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const slots = db.prepare('SELECT slot FROM sandboxes ORDER BY slot');
  const byId = db.prepare('SELECT * FROM sandboxes WHERE id = ?');
  const all = db.prepare('SELECT * FROM sandboxes ORDER BY started_at');
  const remove = db.prepare('DELETE FROM sandboxes WHERE id = ?');

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
          record.agentToken,
          record.envdAccessToken ?? null,
          JSON.stringify(record.limits),
          JSON.stringify(record.metadata),
          JSON.stringify(record.envVars),
          record.startedAt,
          record.endAt,
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
      return row && fromRow(row);
    },

    listSandboxes() {
      return (all.all() as unknown as Row[]).map(fromRow);
    },

    updateSandbox(id, patch) {
      const sets: string[] = [];
      const values: Array<string | number> = [];
      const set = (column: string, value: string | number) => {
        sets.push(`${column} = ?`);
        values.push(value);
      };
      if (patch.state !== undefined) set('state', patch.state);
      if (patch.endAt !== undefined) set('end_at', patch.endAt);
      if (patch.metadata !== undefined) set('metadata', JSON.stringify(patch.metadata));
      if (sets.length === 0) return;
      const result = db.prepare(`UPDATE sandboxes SET ${sets.join(', ')} WHERE id = ?`).run(...values, id);
      if (result.changes === 0) throw new CoveError('not_found', `sandbox ${id} not found`);
    },

    deleteSandbox(id) {
      remove.run(id);
    },

    close() {
      db.close();
    },
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
    limits: JSON.parse(row.limits) as SandboxRecord['limits'],
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    envVars: JSON.parse(row.env_vars) as Record<string, string>,
    startedAt: row.started_at,
    endAt: row.end_at,
  };
}
