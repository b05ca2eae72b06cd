import { createHash, randomBytes } from 'node:crypto';
import { CoveError } from '../core/errors.ts';
import type { ApiKeyRecord, Store } from '../store/store.ts';

/** What a key looks like: `e2b_` + hex, as E2B's SDKs up to 2.50 insist (spec section 0). */
export const apiKeyPattern = /^e2b_[0-9a-f]{8,128}$/;

/** What a key's name may be (also checked by src/cluster/keys.ts). */
export const keyNamePattern = /^[\w .@-]{1,64}$/;

/**
 * sha256, not a password hash: a key carries 160 random bits, so no guessing attack gains
 * anything from a slow hash, and a fast one lets a request's key be looked up by its hash
 * in one indexed query. For the same reason a lookup that takes longer for some hashes than
 * others leaks nothing an attacker could use (they would need preimages of sha256).
 */
export function hashApiKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** A new key: 20 random bytes, 40 hex digits. */
export function newApiKey(): string {
  return `e2b_${randomBytes(20).toString('hex')}`;
}

/** lastUsedAt is written at most this often per key: a write per request would cost more than the check. */
const TOUCH_EVERY_MS = 60_000;

export type Keyring = ReturnType<typeof createKeyring>;

/**
 * The API keys of one Cove, over its store. The server and the CLI may hold one each on the
 * same database: a key created or revoked by the CLI counts at the server's next request,
 * because `verify` reads the store every time (one indexed lookup, no cache to go stale).
 */
export function createKeyring(store: Store, now: () => number = Date.now) {
  const touched = new Map<string, number>();

  function add(key: string, name: string, createdBy?: string): ApiKeyRecord {
    const record: ApiKeyRecord = {
      id: `key_${randomBytes(6).toString('hex')}`,
      name,
      hash: hashApiKey(key),
      mask: `${key.slice(0, 8)}…`,
      createdAt: now(),
      ...(createdBy !== undefined && { createdBy }),
    };
    store.insertApiKey(record);
    return record;
  }

  function checkName(name: string): void {
    if (!keyNamePattern.test(name))
      throw new CoveError('invalid_argument', 'a key name is 1-64 letters, digits, spaces or _.@-');
  }

  return {
    /** Mints and stores a key. The key itself is returned here once and never again.
     * `createdBy`: the key that asked for it through the API (its revocation takes this one). */
    create(name = 'default', createdBy?: string): { key: string; record: ApiKeyRecord } {
      checkName(name);
      const key = newApiKey();
      return { key, record: add(key, name, createdBy) };
    },

    /** Stores a key chosen by the caller (tests, provisioning); a no-op if it is stored already. */
    seed(key: string, name = 'seeded'): ApiKeyRecord {
      checkName(name);
      if (!apiKeyPattern.test(key))
        throw new CoveError('invalid_argument', 'an API key is e2b_ followed by 8-128 hex digits');
      return store.apiKeyByHash(hashApiKey(key)) ?? add(key, name);
    },

    list(): ApiKeyRecord[] {
      return store.listApiKeys();
    },

    /**
     * Removes a key by its id, and every key minted through the API by it or by those, down
     * the line; requests that present any of them fail from then on. Returns the ids removed,
     * `id` first.
     */
    revoke(id: string): string[] {
      const all = store.listApiKeys();
      if (!all.some((k) => k.id === id)) throw new CoveError('not_found', `API key ${id} not found`);
      const gone = [id];
      for (let i = 0; i < gone.length; i++)
        for (const k of all) if (k.createdBy === gone[i] && !gone.includes(k.id)) gone.push(k.id);
      for (const k of gone) {
        store.deleteApiKey(k);
        touched.delete(k);
      }
      return gone;
    },

    /** The key's record when `key` is a stored key, else undefined. */
    verify(key: string): ApiKeyRecord | undefined {
      if (key.length > 256) return undefined;
      const record = store.apiKeyByHash(hashApiKey(key));
      if (!record) return undefined;
      const at = now();
      if (at - (touched.get(record.id) ?? record.lastUsedAt ?? 0) >= TOUCH_EVERY_MS) {
        store.touchApiKey(record.id, at);
        touched.set(record.id, at);
      }
      return record;
    },
  };
}
