import type { DatabaseSync } from 'node:sqlite';
import { CoveError } from '../core/errors.ts';
import type { SnapshotRecord, Store } from './store.ts';

/** The snapshots table, a migration of sqlite.ts. A name is unique when given. */
export const snapshotsTable = `CREATE TABLE snapshots (
     id TEXT PRIMARY KEY,
     name TEXT UNIQUE,
     sandbox_id TEXT NOT NULL,
     template_name TEXT NOT NULL,
     template_hash TEXT NOT NULL,
     uid_base INTEGER NOT NULL,
     limits TEXT NOT NULL,
     metadata TEXT NOT NULL,
     env_vars TEXT NOT NULL,
     size_bytes INTEGER NOT NULL,
     created_at INTEGER NOT NULL
   ) STRICT`;

interface Row {
  id: string;
  name: string | null;
  sandbox_id: string;
  template_name: string;
  template_hash: string;
  uid_base: number;
  limits: string;
  metadata: string;
  env_vars: string;
  size_bytes: number;
  created_at: number;
  volume_mounts: string | null;
}

type SnapshotMethods = Pick<Store, 'insertSnapshot' | 'getSnapshot' | 'listSnapshots' | 'deleteSnapshot'>;

/** The snapshot half of the SQLite store (sqlite.ts spreads it in). */
export function sqliteSnapshots(db: DatabaseSync): SnapshotMethods {
  const insert = db.prepare(
    `INSERT INTO snapshots (id, name, sandbox_id, template_name, template_hash, uid_base, limits, metadata, env_vars, size_bytes, created_at, volume_mounts)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const byIdOrName = db.prepare('SELECT * FROM snapshots WHERE id = ? OR name = ? LIMIT 1');
  const all = db.prepare('SELECT * FROM snapshots ORDER BY created_at, id');
  const remove = db.prepare('DELETE FROM snapshots WHERE id = ?');
  return {
    insertSnapshot(r) {
      try {
        insert.run(
          r.id,
          r.name ?? null,
          r.sandboxId,
          r.templateName,
          r.templateHash,
          r.uidBase,
          JSON.stringify(r.limits),
          JSON.stringify(r.metadata),
          JSON.stringify(r.envVars),
          r.sizeBytes,
          r.createdAt,
          r.volumeMounts?.length ? JSON.stringify(r.volumeMounts) : null,
        );
      } catch (err) {
        if (
          (err as { errcode?: number }).errcode === SQLITE_CONSTRAINT_UNIQUE ||
          (err as { errcode?: number }).errcode === SQLITE_CONSTRAINT_PRIMARYKEY
        )
          throw new CoveError('already_exists', `a snapshot named ${r.name ?? r.id} already exists`, {
            cause: err,
          });
        throw err;
      }
    },
    getSnapshot(idOrName) {
      const row = byIdOrName.get(idOrName, idOrName) as Row | undefined;
      return row && fromRow(row);
    },
    listSnapshots() {
      return (all.all() as unknown as Row[]).map(fromRow);
    },
    deleteSnapshot(id) {
      return remove.run(id).changes > 0;
    },
  };
}

// Extended result codes: a UNIQUE and a PRIMARY KEY violation (sqlite3.h).
export const SQLITE_CONSTRAINT_UNIQUE = 2067;
export const SQLITE_CONSTRAINT_PRIMARYKEY = 1555;

function fromRow(row: Row): SnapshotRecord {
  return {
    id: row.id,
    ...(row.name !== null && { name: row.name }),
    sandboxId: row.sandbox_id,
    templateName: row.template_name,
    templateHash: row.template_hash,
    uidBase: row.uid_base,
    limits: JSON.parse(row.limits) as SnapshotRecord['limits'],
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    envVars: JSON.parse(row.env_vars) as Record<string, string>,
    sizeBytes: row.size_bytes,
    createdAt: row.created_at,
    ...(row.volume_mounts !== null && {
      volumeMounts: JSON.parse(row.volume_mounts) as NonNullable<SnapshotRecord['volumeMounts']>,
    }),
  };
}
