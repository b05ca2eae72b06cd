import type { Db } from './db.ts';

/**
 * The cluster schema, one entry per version, in SQL both engines take (no STRICT, BIGINT for
 * epoch milliseconds, TEXT for JSON). Append only: a released entry is never edited.
 */
export const migrations: readonly string[] = [
  `CREATE TABLE api_keys (
     id TEXT PRIMARY KEY,
     name TEXT NOT NULL,
     hash TEXT NOT NULL UNIQUE,
     mask TEXT NOT NULL,
     created_at BIGINT NOT NULL
   )`,
  `CREATE TABLE nodes (
     name TEXT PRIMARY KEY,
     url TEXT NOT NULL,
     state TEXT NOT NULL,
     slots INTEGER NOT NULL,
     free INTEGER NOT NULL,
     templates TEXT NOT NULL,
     last_seen BIGINT NOT NULL,
     registered_at BIGINT NOT NULL
   )`,
  `CREATE TABLE placements (
     id TEXT PRIMARY KEY,
     node TEXT NOT NULL REFERENCES nodes(name),
     key_id TEXT,
     template TEXT NOT NULL,
     state TEXT NOT NULL,
     created_at BIGINT NOT NULL
   )`,
  `CREATE INDEX placements_node ON placements (node, state)`,
  // Where resources other than sandboxes live (volumes, snapshots, template builds and their
  // uploads): calls about them go to that node, and creates that need them are placed there.
  `CREATE TABLE homes (
     kind TEXT NOT NULL,
     id TEXT NOT NULL,
     node TEXT NOT NULL,
     key_id TEXT,
     created_at BIGINT NOT NULL,
     PRIMARY KEY (kind, id)
   )`,
  // The sandbox's envd access token, sealed with a key derived from the cluster secret
  // (seal.ts): replicas route signed /files URLs by it, a copy of the database reveals none.
  `ALTER TABLE placements ADD COLUMN envd_token TEXT`,
  // An operator's drain (cove node drain): kept across the node's heartbeats, which say only
  // whether the node itself is draining.
  `ALTER TABLE nodes ADD COLUMN drain INTEGER NOT NULL DEFAULT 0`,
  // The key that minted a key through the API (POST /cove/v1/keys): revoking it revokes those.
  `ALTER TABLE api_keys ADD COLUMN created_by TEXT`,
  // Secrets (spec 2.16) behind cove api: every replica serves them, nodes' egress proxies ask
  // a replica for a value (secrets.ts); only the current version's value is kept, sealed.
  `CREATE TABLE secrets (
     id TEXT PRIMARY KEY,
     owner TEXT NOT NULL,
     name TEXT NOT NULL,
     metadata TEXT NOT NULL,
     version INTEGER NOT NULL,
     value TEXT NOT NULL,
     created_at TEXT NOT NULL,
     updated_at TEXT NOT NULL,
     UNIQUE (owner, name)
   )`,
];

/** Key of the advisory lock that serialises migrations between API replicas starting at once. */
const MIGRATION_LOCK = 0x636f7665; // "cove"

/**
 * Brings the schema to the latest version, one transaction per step, each re-reading the
 * version under the lock: two replicas starting together never apply a step twice.
 */
export async function migrate(db: Db): Promise<number> {
  await db.run('CREATE TABLE IF NOT EXISTS cove_schema (version INTEGER NOT NULL)').catch((err: unknown) => {
    // Two PostgreSQL sessions racing on IF NOT EXISTS: one of them fails on the catalog's
    // unique index although the table now exists; the transaction below sees it.
    if ((err as { code?: string }).code !== '23505') throw err;
  });
  for (;;) {
    const done = await db.tx(async (tx) => {
      await tx.lock(MIGRATION_LOCK);
      const rows = await tx.query<{ version: number }>('SELECT version FROM cove_schema');
      const version = rows[0]?.version ?? 0;
      if (version >= migrations.length) return true;
      await tx.run(migrations[version]!);
      if (rows.length === 0) await tx.run('INSERT INTO cove_schema (version) VALUES (?)', [version + 1]);
      else await tx.run('UPDATE cove_schema SET version = ?', [version + 1]);
      return false;
    });
    if (done) return migrations.length;
  }
}
