import type { DatabaseSync } from 'node:sqlite';
import { run } from '../../core/exec.ts';

/**
 * Which sandboxes may reach the database server: the nft set `db_clients` of the instance's
 * table (declared by src/network/policy.ts, whose input chain lets only its addresses reach
 * the server's port on the bridge address), and the grants that fill it, kept in
 * databases.db so that a restart re-applies them. The set outlives a restart as the egress
 * maps do; `sync()` at start makes it exactly the grants of live sandboxes.
 * Every nft change goes through one queue: a killed sandbox's address is removed before a new
 * sandbox in the same slot can be added, whatever the timing of the events.
 */
export function createDatabaseAccess(db: DatabaseSync, table: string) {
  db.exec(`CREATE TABLE IF NOT EXISTS grants (
    sandbox_id TEXT PRIMARY KEY, database_id TEXT NOT NULL, address TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS snapshot_databases (
      snapshot_id TEXT PRIMARY KEY, name TEXT, database_id TEXT NOT NULL)`);
  let queue: Promise<unknown> = Promise.resolve();
  const nft = (lines: string[]): Promise<void> => {
    const next = queue.then(() => run('nft', ['-f', '-'], { input: `${lines.join('\n')}\n` }));
    queue = next.catch(() => {});
    return next.then(() => undefined);
  };
  const set = `inet ${table} db_clients`;
  // Adding before deleting makes the delete succeed when the element is already gone.
  const remove = (address: string) => [
    `add element ${set} { ${address} }`,
    `delete element ${set} { ${address} }`,
  ];

  return {
    /** The database a sandbox was given, if any. */
    databaseOf(sandboxId: string): string | undefined {
      const g = db.prepare('SELECT database_id FROM grants WHERE sandbox_id = ?').get(sandboxId);
      return g ? String(g.database_id) : undefined;
    },

    /** The database of the sandbox at `address` (the newest grant: a slot's last sandbox). */
    databaseAt(address: string): string | undefined {
      const g = db
        .prepare('SELECT database_id FROM grants WHERE address = ? ORDER BY rowid DESC')
        .get(address);
      return g ? String(g.database_id) : undefined;
    },

    /** A snapshot of a sandbox with a database: sandboxes created from it may get that database. */
    rememberSnapshot(snapshotId: string, name: string | undefined, databaseId: string): void {
      db.prepare(
        'INSERT OR REPLACE INTO snapshot_databases (snapshot_id, name, database_id) VALUES (?, ?, ?)',
      ).run(snapshotId, name ?? null, databaseId);
    },

    /** The database a snapshot (by id or name) remembers, if `template` names one. */
    snapshotDatabase(template: string): string | undefined {
      const s = db
        .prepare('SELECT database_id FROM snapshot_databases WHERE snapshot_id = ? OR name = ?')
        .get(template, template);
      return s ? String(s.database_id) : undefined;
    },

    forgetSnapshot(idOrName: string): void {
      db.prepare('DELETE FROM snapshot_databases WHERE snapshot_id = ? OR name = ?').run(idOrName, idOrName);
    },

    /** Lets the sandbox at `address` reach the server; its role's password does the rest. */
    async grant(sandboxId: string, databaseId: string, address: string): Promise<void> {
      db.prepare('INSERT OR REPLACE INTO grants (sandbox_id, database_id, address) VALUES (?, ?, ?)').run(
        sandboxId,
        databaseId,
        address,
      );
      await nft([`add element ${set} { ${address} }`]);
    },

    /** The sandbox is gone: its address may serve another sandbox next. */
    async revoke(sandboxId: string): Promise<void> {
      const g = db.prepare('SELECT address FROM grants WHERE sandbox_id = ?').get(sandboxId);
      if (!g) return;
      await nft(remove(String(g.address)));
      db.prepare('DELETE FROM grants WHERE sandbox_id = ?').run(sandboxId);
    },

    /** At start: keeps the grants of live sandboxes whose database exists, and makes the set exactly those. */
    async sync(live: (sandboxId: string) => string | undefined, exists: (databaseId: string) => boolean) {
      const kept: string[] = [];
      for (const g of db.prepare('SELECT * FROM grants').all()) {
        const address = live(String(g.sandbox_id));
        if (address === String(g.address) && exists(String(g.database_id))) kept.push(address);
        else db.prepare('DELETE FROM grants WHERE sandbox_id = ?').run(String(g.sandbox_id));
      }
      await nft([`flush set ${set}`, ...(kept.length ? [`add element ${set} { ${kept.join(', ')} }`] : [])]);
    },
  };
}

export type DatabaseAccess = ReturnType<typeof createDatabaseAccess>;
