import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { createSqliteStore } from './sqlite.ts';
import type { SandboxRecord } from './store.ts';
import { scratchDir } from '../../test/scratch.ts';

const record = (id: string): Omit<SandboxRecord, 'slot'> => ({
  id,
  templateName: 'base',
  templateHash: 'abc',
  state: 'starting',
  agentToken: 't',
  limits: { cpus: 2, memoryMiB: 512, pids: 1024 },
  metadata: { a: 'b' },
  envVars: { X: '1' },
  startedAt: 1,
  endAt: 2,
});

describe('sqlite store', () => {
  const path = () => join(scratchDir('cove-store-'), 'cove.db');

  it('hands out the lowest free slot and reuses freed ones', () => {
    const store = createSqliteStore(path());
    expect(store.insertSandbox(record('a'), 10).slot).toBe(0);
    expect(store.insertSandbox(record('b'), 10).slot).toBe(1);
    expect(store.insertSandbox(record('c'), 10).slot).toBe(2);
    store.deleteSandbox('b');
    expect(store.insertSandbox(record('d'), 10).slot).toBe(1);
  });

  it('keeps a sandbox’s network settings and traffic token, and updates them', () => {
    const store = createSqliteStore(path());
    const network = {
      allowOut: ['1.2.3.4/32'],
      denyOut: ['0.0.0.0/0'],
      allowInternetAccess: false,
      allowPublicTraffic: false,
      httpsPorts: [8443],
    };
    store.insertSandbox({ ...record('a'), network, trafficAccessToken: 'tok' }, 10);
    expect(store.getSandbox('a')).toMatchObject({ network, trafficAccessToken: 'tok' });
    store.updateSandbox('a', { network: { ...network, denyOut: [] } });
    expect(store.getSandbox('a')?.network?.denyOut).toEqual([]);
    expect(store.insertSandbox(record('b'), 10)).not.toHaveProperty('network');
    expect(store.getSandbox('b')).not.toHaveProperty('network');
  });

  it('refuses duplicates and a full host, and keeps what it had', () => {
    const store = createSqliteStore(path());
    store.insertSandbox(record('a'), 2);
    try {
      store.insertSandbox(record('a'), 2);
      expect.unreachable();
    } catch (err) {
      expect(isCoveError(err, 'already_exists')).toBe(true);
    }
    store.insertSandbox(record('b'), 2);
    try {
      store.insertSandbox(record('c'), 2);
      expect.unreachable();
    } catch (err) {
      expect(isCoveError(err, 'resource_exhausted')).toBe(true);
    }
    expect(store.listSandboxes().map((r) => r.id)).toEqual(['a', 'b']);
  });

  it('claims a pooled record in one update: state, times, env, metadata and token', () => {
    const store = createSqliteStore(path());
    store.insertSandbox({ ...record('p'), state: 'pooled' }, 10);
    store.updateSandbox('p', {
      state: 'running',
      startedAt: 5,
      endAt: 6,
      envVars: { A: 'b' },
      metadata: { m: 'n' },
      envdAccessToken: 'tok',
    });
    expect(store.getSandbox('p')).toMatchObject({
      state: 'running',
      startedAt: 5,
      endAt: 6,
      envVars: { A: 'b' },
      metadata: { m: 'n' },
      envdAccessToken: 'tok',
    });
  });

  it('persists updates across a reopen', () => {
    const file = path();
    const store = createSqliteStore(file);
    store.insertSandbox(record('a'), 10);
    store.updateSandbox('a', { state: 'running', endAt: 99, metadata: { k: 'v' } });
    store.close();
    const again = createSqliteStore(file);
    expect(again.getSandbox('a')).toMatchObject({
      state: 'running',
      endAt: 99,
      metadata: { k: 'v' },
      envVars: { X: '1' },
    });
    expect(() => again.updateSandbox('missing', { state: 'running' })).toThrow(/not found/);
  });

  it('keeps API keys by hash and refuses a duplicate id or hash', () => {
    const file = path();
    const store = createSqliteStore(file);
    const key = { id: 'key_1', name: 'a', hash: 'h1', mask: 'e2b_1234…', createdAt: 5 };
    store.insertApiKey(key);
    for (const dup of [
      { ...key, hash: 'h2' },
      { ...key, id: 'key_2' },
    ]) {
      try {
        store.insertApiKey(dup);
        expect.unreachable();
      } catch (err) {
        expect(isCoveError(err, 'already_exists')).toBe(true);
      }
    }
    store.touchApiKey('key_1', 9);
    // A second process opening the same file (the CLI beside the server) sees the same keys.
    const other = createSqliteStore(file);
    expect(other.apiKeyByHash('h1')).toEqual({ ...key, lastUsedAt: 9 });
    expect(other.deleteApiKey('key_1')).toBe(true);
    expect(store.listApiKeys()).toEqual([]);
    expect(store.deleteApiKey('key_1')).toBe(false);
  });
});

describe('sqlite store: snapshots and paused sandboxes', () => {
  const path = () => join(scratchDir('cove-store-'), 'cove.db');
  const snapshot = (id: string, name?: string) => ({
    id,
    ...(name !== undefined && { name }),
    sandboxId: 'a',
    templateName: 'base',
    templateHash: 'abc',
    uidBase: 1_000_000,
    limits: { cpus: 1, memoryMiB: 256, pids: 64 },
    metadata: {},
    envVars: {},
    sizeBytes: 4096,
    createdAt: 1,
  });

  it('finds a snapshot by id or name, refuses a taken name, lists and deletes', () => {
    const store = createSqliteStore(path());
    store.insertSnapshot(snapshot('s1', 'one'));
    store.insertSnapshot(snapshot('s2'));
    expect(store.getSnapshot('one')?.id).toBe('s1');
    expect(store.getSnapshot('s2')).toEqual(snapshot('s2'));
    expect(() => store.insertSnapshot(snapshot('s3', 'one'))).toThrow(/already exists/);
    expect(store.listSnapshots().map((s) => s.id)).toEqual(['s1', 's2']);
    expect(store.deleteSnapshot('s1')).toBe(true);
    expect(store.deleteSnapshot('s1')).toBe(false);
  });

  it('keeps how a sandbox is paused and its lifecycle, and clears the first', () => {
    const store = createSqliteStore(path());
    const lifecycle = { onTimeout: 'pause' as const, keepMemory: false, autoResume: false, timeoutMs: 3000 };
    store.insertSandbox({ ...record('p'), lifecycle }, 10);
    store.updateSandbox('p', { state: 'paused', paused: 'filesystem' });
    expect(store.getSandbox('p')).toMatchObject({ state: 'paused', paused: 'filesystem', lifecycle });
    store.updateSandbox('p', { state: 'running', paused: null });
    expect(store.getSandbox('p')?.paused).toBeUndefined();
  });
});
