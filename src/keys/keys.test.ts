import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { createSqliteStore } from '../store/sqlite.ts';
import { apiKeyPattern, createKeyring, hashApiKey } from './keys.ts';
import { scratchDir } from '../../test/scratch.ts';

const dbPath = () => join(scratchDir('cove-keys-'), 'cove.db');

describe('API keys', () => {
  it('mints e2b_ keys that verify, stores only their hash, and revokes them', () => {
    const store = createSqliteStore(dbPath());
    const keys = createKeyring(store);
    const { key, record } = keys.create('ci');
    expect(key).toMatch(/^e2b_[0-9a-f]{40}$/);
    expect(key).toMatch(apiKeyPattern);
    expect(record).toMatchObject({ name: 'ci', hash: hashApiKey(key), mask: `${key.slice(0, 8)}…` });
    expect(JSON.stringify(store.listApiKeys())).not.toContain(key);
    expect(keys.verify(key)?.id).toBe(record.id);
    expect(keys.verify(key.replace(/.$/, (c) => (c === '0' ? '1' : '0')))).toBeUndefined();
    expect(keys.verify('')).toBeUndefined();
    keys.revoke(record.id);
    expect(keys.verify(key)).toBeUndefined();
    expect(() => keys.revoke(record.id)).toThrow(/not found/);
  });

  it('records the last use at most once a minute', () => {
    let clock = 1_000_000;
    const store = createSqliteStore(dbPath());
    const keys = createKeyring(store, () => clock);
    const { key, record } = keys.create();
    expect(store.listApiKeys()[0]?.lastUsedAt).toBeUndefined();
    keys.verify(key);
    expect(store.listApiKeys()[0]?.lastUsedAt).toBe(clock);
    clock += 30_000;
    keys.verify(key);
    expect(store.listApiKeys()[0]?.lastUsedAt).toBe(clock - 30_000);
    clock += 30_000;
    keys.verify(key);
    expect(store.listApiKeys()[0]).toMatchObject({ id: record.id, lastUsedAt: clock });
  });

  it('seeds a chosen key once and refuses malformed ones', () => {
    const keys = createKeyring(createSqliteStore(dbPath()));
    const key = `e2b_${'ab'.repeat(20)}`;
    const first = keys.seed(key);
    expect(keys.seed(key).id).toBe(first.id);
    expect(keys.list()).toHaveLength(1);
    for (const bad of ['e2b_XYZ', 'sk-123', `e2b_${'a'.repeat(200)}`]) {
      try {
        keys.seed(bad);
        expect.unreachable();
      } catch (err) {
        expect(isCoveError(err, 'invalid_argument')).toBe(true);
      }
    }
    expect(() => keys.create('')).toThrow(/name/);
  });

  it('sees keys that another process added or revoked, at once', () => {
    const path = dbPath();
    const server = createKeyring(createSqliteStore(path));
    const cli = createKeyring(createSqliteStore(path));
    const { key, record } = cli.create('from the cli');
    expect(server.verify(key)?.name).toBe('from the cli');
    cli.revoke(record.id);
    expect(server.verify(key)).toBeUndefined();
  });

  it('revokes the keys a key made, and theirs, with it; and no others', () => {
    const keys = createKeyring(createSqliteStore(dbPath()));
    const root = keys.create('operator');
    const a = keys.create('agent', root.record.id);
    const b = keys.create('by agent', a.record.id);
    const c = keys.create('by that one', b.record.id);
    const other = keys.create('other', root.record.id);
    expect(keys.list().find((k) => k.id === b.record.id)?.createdBy).toBe(a.record.id);
    expect(keys.revoke(a.record.id)).toEqual([a.record.id, b.record.id, c.record.id]);
    for (const k of [a, b, c]) expect(keys.verify(k.key)).toBeUndefined();
    expect(keys.verify(root.key)?.id).toBe(root.record.id);
    expect(keys.verify(other.key)?.id).toBe(other.record.id);
  });
});
