import { randomBytes } from 'node:crypto';
import { CoveError } from '../core/errors.ts';
import { hashApiKey, keyNamePattern, newApiKey } from '../keys/keys.ts';
import type { KeyAdmin } from '../api/keys.ts';
import type { ApiKeyRecord } from '../store/store.ts';
import type { Db } from './db.ts';

interface Row {
  id: string;
  name: string;
  hash: string;
  mask: string;
  created_at: number;
  created_by: string | null;
}

/**
 * The cluster's API keys as the console's keys page manages them (`/cove/v1/keys`, src/api/keys.ts),
 * in the cluster store: the same rules as the host's keyring (src/keys): a key made through the
 * API records its maker, and revoking a key revokes every key minted by it, down the line.
 * Replicas check keys against the store at every request, so a revocation counts at once.
 */
export function clusterKeys(db: Db): KeyAdmin {
  const record = (r: Row): ApiKeyRecord => ({
    id: r.id,
    name: r.name,
    hash: r.hash,
    mask: r.mask,
    createdAt: Number(r.created_at),
    ...(r.created_by !== null && { createdBy: r.created_by }),
  });
  const all = async () =>
    (
      await db.query<Row>(
        'SELECT id, name, hash, mask, created_at, created_by FROM api_keys ORDER BY created_at, id',
      )
    ).map(record);
  return {
    list: all,
    async create(name: string, createdBy: string) {
      if (!keyNamePattern.test(name))
        throw new CoveError('invalid_argument', 'a key name is 1-64 letters, digits, spaces or _.@-');
      const key = newApiKey();
      const r: ApiKeyRecord = {
        id: `key_${randomBytes(6).toString('hex')}`,
        name,
        hash: hashApiKey(key),
        mask: `${key.slice(0, 8)}…`,
        createdAt: Date.now(),
        createdBy,
      };
      await db.run(
        'INSERT INTO api_keys (id, name, hash, mask, created_at, created_by) VALUES (?, ?, ?, ?, ?, ?)',
        [r.id, r.name, r.hash, r.mask, r.createdAt, createdBy],
      );
      return { key, record: r };
    },
    async revoke(id: string) {
      return db.tx(async (tx) => {
        const keys = await tx.query<Row>('SELECT id, created_by FROM api_keys');
        if (!keys.some((k) => k.id === id)) throw new CoveError('not_found', `API key ${id} not found`);
        const gone = [id];
        for (let i = 0; i < gone.length; i++)
          for (const k of keys) if (k.created_by === gone[i] && !gone.includes(k.id)) gone.push(k.id);
        for (const k of gone) await tx.run('DELETE FROM api_keys WHERE id = ?', [k]);
        return gone;
      });
    },
  };
}
