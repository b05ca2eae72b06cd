import { CoveError } from '../core/errors.ts';
import { newSecretRecord, SECRET_ID, type SecretInfo } from '../secrets/store.ts';
import type { Db } from './db.ts';
import type { Sealer } from './seal.ts';

interface Row {
  id: string;
  owner: string;
  name: string;
  metadata: string;
  version: number;
  value: string;
  created_at: string;
  updated_at: string;
}

const info = (r: Row): SecretInfo => ({
  secretID: r.id,
  name: r.name,
  metadata: JSON.parse(r.metadata) as Record<string, string>,
  currentVersion: r.version,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/**
 * Secrets (spec 2.16) behind `cove api`, in the cluster store: the same behaviour as the
 * single-host store (src/secrets/store.ts: names, ids, versions, owner scoping), so the same
 * routes (src/api/secrets.ts) serve them. Values are sealed with a key derived from the
 * cluster secret (seal.ts): a copy of the database reveals none. Only the current value is
 * kept: nothing reads an older one. A node's egress proxy asks a replica for a value
 * (api.ts, `/cluster/v1/secret`), for a sandbox placed on that node only.
 */
export function clusterSecrets(db: Db, sealer: Sealer) {
  async function find(owner: string, idOrName: string): Promise<Row> {
    const rows = SECRET_ID.test(idOrName)
      ? await db.query<Row>('SELECT * FROM secrets WHERE id = ? AND owner = ?', [idOrName, owner])
      : await db.query<Row>('SELECT * FROM secrets WHERE owner = ? AND name = ?', [
          owner,
          idOrName.toLowerCase(),
        ]);
    const row = rows[0];
    if (!row) throw new CoveError('not_found', `secret ${idOrName} not found`);
    return row;
  }

  return {
    async create(
      owner: string,
      name: string,
      value: string,
      metadata: Record<string, string> = {},
    ): Promise<SecretInfo> {
      const secret = newSecretRecord(name, metadata);
      const n = await db.run(
        `INSERT INTO secrets (id, owner, name, metadata, version, value, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
        [
          secret.secretID,
          owner,
          secret.name,
          JSON.stringify(metadata),
          secret.currentVersion,
          sealer.seal(value),
          secret.createdAt,
          secret.updatedAt,
        ],
      );
      if (n === 0) throw new CoveError('already_exists', `a secret named ${secret.name} already exists`);
      return secret;
    },

    /** The owner's secrets, oldest first. */
    async list(owner: string): Promise<SecretInfo[]> {
      const rows = await db.query<Row>('SELECT * FROM secrets WHERE owner = ? ORDER BY created_at, id', [
        owner,
      ]);
      return rows.map(info);
    },

    async get(owner: string, idOrName: string): Promise<SecretInfo> {
      return info(await find(owner, idOrName));
    },

    /** A new version: the value replaced, metadata too when given. */
    async update(
      owner: string,
      idOrName: string,
      value: string,
      metadata?: Record<string, string>,
    ): Promise<SecretInfo> {
      const old = await find(owner, idOrName);
      const row: Row = {
        ...old,
        ...(metadata && { metadata: JSON.stringify(metadata) }),
        version: old.version + 1,
        value: sealer.seal(value),
        updated_at: new Date().toISOString(),
      };
      // Conditional on the version read: two updates at once make two versions, not one lost.
      const n = await db.run(
        'UPDATE secrets SET metadata = ?, version = ?, value = ?, updated_at = ? WHERE id = ? AND version = ?',
        [row.metadata, row.version, row.value, row.updated_at, row.id, old.version],
      );
      if (n === 0) return this.update(owner, idOrName, value, metadata);
      return info(row);
    },

    async delete(owner: string, idOrName: string): Promise<void> {
      const row = await find(owner, idOrName);
      await db.run('DELETE FROM secrets WHERE id = ?', [row.id]);
    },

    /** The current value, for a node's egress proxy (never for the API). */
    async value(owner: string, idOrName: string): Promise<string> {
      const plain = sealer.open((await find(owner, idOrName)).value);
      if (plain === undefined) throw new CoveError('internal', 'a secret sealed with another cluster secret');
      return plain;
    },
  };
}

export type ClusterSecrets = ReturnType<typeof clusterSecrets>;
