import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openPostgresDb } from '../src/cluster/db-postgres.ts';
import { openSqliteDb } from '../src/cluster/db-sqlite.ts';
import type { Db } from '../src/cluster/db.ts';
import { migrations } from '../src/cluster/migrations.ts';
import {
  openClusterStore,
  PLACEMENT_GRACE_MS,
  type ClusterStore,
  type Heartbeat,
} from '../src/cluster/store.ts';
import { clusterKeys } from '../src/cluster/keys.ts';
import { createSealer, SECRET_AT_REST } from '../src/cluster/seal.ts';
import { clusterSecrets } from '../src/cluster/secrets.ts';
import { hashApiKey } from '../src/keys/keys.ts';
import { canRunSandboxes } from './helpers.ts';
import { startTestPostgres, type TestPostgres } from './postgres.ts';

// The same cases on both engines of the cluster store (src/cluster): the embedded SQLite
// and a real PostgreSQL this file starts (test/postgres.ts; root for its `postgres` user).
let pg: TestPostgres | undefined;
const tmp = mkdtempSync(join(tmpdir(), 'cove-cluster-store-'));
let n = 0;
const engines: Array<[string, () => Db]> = [
  ['sqlite', () => openSqliteDb(join(tmp, `${++n}.db`))],
  ['postgres', () => openPostgresDb(pg!.url, { retryMs: 20_000 })],
];

beforeAll(() => {
  if (canRunSandboxes) pg = startTestPostgres();
});
afterAll(() => {
  pg?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

const beat = (
  name: string,
  sandboxes: Heartbeat['sandboxes'] = [],
  over: Partial<Heartbeat> = {},
): Heartbeat => ({
  name,
  url: `http://${name}:3000`,
  slots: 10,
  free: 10 - sandboxes.length,
  templates: ['base'],
  draining: false,
  sandboxes,
  ...over,
});

describe.skipIf(!canRunSandboxes).each(engines)('cluster store on %s', (engine, open) => {
  let store: ClusterStore;
  beforeAll(async () => {
    store = await openClusterStore(open());
    // Each engine starts empty: the PostgreSQL cluster is shared by this file's cases.
    await store.db.run('DELETE FROM placements');
    await store.db.run('DELETE FROM homes');
    await store.db.run('DELETE FROM nodes');
    await store.db.run('DELETE FROM api_keys');
  });
  afterAll(() => store.close());

  it('migrates once, also when opened again and concurrently', async () => {
    const again = await Promise.all([openClusterStore(open()), openClusterStore(open())]);
    const rows = await store.db.query<{ version: number }>('SELECT version FROM cove_schema');
    expect(rows).toEqual([{ version: migrations.length }]);
    await Promise.all(again.map((s) => s.close()));
    expect(engine).toBe(store.db.dialect);
  });

  it('keeps API keys by hash, refuses a duplicate, deletes', async () => {
    const key = { id: 'k1', name: 'ci', hash: 'h'.repeat(64), mask: 'e2b_1234…', createdAt: 5 };
    await store.insertApiKey(key);
    await expect(store.insertApiKey({ ...key, id: 'k2' })).rejects.toMatchObject({ code: 'already_exists' });
    expect(await store.apiKeyByHash(key.hash)).toEqual(key);
    expect(await store.countApiKeys()).toBe(1);
    expect(await store.deleteApiKey('k1')).toBe(true);
    expect(await store.deleteApiKey('k1')).toBe(false);
    expect(await store.apiKeyByHash(key.hash)).toBeUndefined();
  });

  it('registers nodes by heartbeat and marks the silent ones and their sandboxes lost', async () => {
    await store.heartbeat(beat('a'), 1_000);
    await store.heartbeat(beat('b', [], { draining: true }), 1_000);
    await store.insertPlacement({
      id: 's1',
      node: 'a',
      keyId: 'k',
      template: 'base',
      state: 'running',
      createdAt: 1_000,
    });
    await expect(
      store.insertPlacement({
        id: 's1',
        node: 'b',
        keyId: 'k',
        template: 'base',
        state: 'running',
        createdAt: 1_000,
      }),
    ).rejects.toMatchObject({ code: 'already_exists' });
    expect((await store.listNodes()).map((x) => [x.name, x.state])).toEqual([
      ['a', 'up'],
      ['b', 'draining'],
    ]);
    await store.heartbeat(beat('b'), 5_000);
    // Two replicas sweeping at once: the node is marked once.
    const swept = await Promise.all([store.markLost(3_000), store.markLost(3_000)]);
    expect(swept.flat()).toEqual(['a']);
    expect((await store.getNode('a'))?.state).toBe('lost');
    expect((await store.getPlacement('s1'))?.state).toBe('lost');
    expect((await store.getNode('b'))?.state).toBe('up');
  });

  it('settles claims: another node’s sandbox ignored, unplaced ones killed after the grace, ended ones removed', async () => {
    const t = 100_000;
    await store.heartbeat(beat('c'), t);
    await store.heartbeat(beat('d'), t);
    await store.insertPlacement({
      id: 'c1',
      node: 'c',
      keyId: null,
      template: 'base',
      state: 'running',
      createdAt: t,
    });
    await store.insertPlacement({
      id: 'c2',
      node: 'c',
      keyId: null,
      template: 'base',
      state: 'running',
      createdAt: t,
    });
    const later = t + PLACEMENT_GRACE_MS + 1;
    const reply = await store.heartbeat(
      beat('d', [
        { id: 'c1', startedAt: t }, // c's: a claim d cannot make
        { id: 'fresh', startedAt: later - 10 }, // a create not yet placed: left alone
        { id: 'stale', startedAt: t }, // never acknowledged: killed
      ]),
      later,
    );
    expect(reply).toEqual({ kill: ['stale'], ignored: ['c1'] });
    expect((await store.getPlacement('c1'))?.node).toBe('c');
    // c still runs c1 but no longer c2: c2 ended there.
    await store.heartbeat(beat('c', [{ id: 'c1', startedAt: t }]), later);
    expect((await store.listPlacements('c')).map((p) => p.id)).toEqual(['c1']);
    expect(await store.deletePlacement('c1', 'd')).toBe(false);
    expect(await store.deletePlacement('c1', 'c')).toBe(true);
  });

  it('reclaims a returning node’s lost sandboxes: killed while it still runs them, then forgotten', async () => {
    await store.heartbeat(beat('e'), 1_000);
    await store.insertPlacement({
      id: 'e1',
      node: 'e',
      keyId: null,
      template: 'base',
      state: 'running',
      createdAt: 1_000,
    });
    await store.markLost(2_000);
    const back = await store.heartbeat(beat('e', [{ id: 'e1', startedAt: 1_000 }]), 10_000);
    expect(back.kill).toEqual(['e1']);
    expect((await store.getNode('e'))?.state).toBe('up');
    await store.heartbeat(beat('e'), 11_000);
    expect(await store.getPlacement('e1')).toBeUndefined();
  });

  it('keeps an operator’s drain across heartbeats until undrained; a lost node stays lost', async () => {
    await store.heartbeat(beat('f'), 1_000);
    expect(await store.setDrain('f', true)).toBe(true);
    expect(await store.setDrain('nope', true)).toBe(false);
    await store.heartbeat(beat('f'), 2_000);
    expect((await store.getNode('f'))?.state).toBe('draining');
    await store.markLost(3_000);
    await store.setDrain('f', true);
    expect((await store.getNode('f'))?.state).toBe('lost');
    await store.heartbeat(beat('f'), 4_000); // back, and still drained
    expect((await store.getNode('f'))?.state).toBe('draining');
    await store.setDrain('f', false);
    expect((await store.getNode('f'))?.state).toBe('up');
    await store.heartbeat(beat('f'), 5_000);
    expect((await store.getNode('f'))?.state).toBe('up');
  });

  it('records where resources live, moves and forgets them; keeps a placement’s sealed token', async () => {
    await store.heartbeat(beat('g'), 1_000);
    await store.setHome({ kind: 'volume', id: 'v1', node: 'g', keyId: 'k', createdAt: 1 });
    await store.setHome({ kind: 'volume', id: 'v2', node: 'g', keyId: 'k', createdAt: 2 });
    await store.setHome({ kind: 'snapshot', id: 'v1', node: 'h', keyId: null, createdAt: 3 });
    await store.setHome({ kind: 'volume', id: 'v2', node: 'h', keyId: 'k', createdAt: 4 });
    expect(await store.getHome('volume', 'v1')).toEqual({
      kind: 'volume',
      id: 'v1',
      node: 'g',
      keyId: 'k',
      createdAt: 1,
    });
    expect((await store.listHomes('volume')).map((h) => [h.id, h.node])).toEqual([
      ['v1', 'g'],
      ['v2', 'h'],
    ]);
    await store.deleteHome('volume', 'v1');
    expect(await store.getHome('volume', 'v1')).toBeUndefined();
    expect((await store.getHome('snapshot', 'v1'))?.node).toBe('h');
    await store.insertPlacement({
      id: 'g1',
      node: 'g',
      keyId: 'k',
      template: 'base',
      state: 'running',
      createdAt: 1,
      envdToken: 'v1.sealed',
    });
    expect((await store.getPlacement('g1'))?.envdToken).toBe('v1.sealed');
  });

  it('secrets and API keys (served by every replica) behave as on one host', async () => {
    await store.db.run('DELETE FROM secrets');
    const secrets = clusterSecrets(store.db, createSealer('s'.repeat(64), SECRET_AT_REST));
    const made = await secrets.create('k1', 'Token', 'one', { a: 'b' });
    expect(made).toMatchObject({ name: 'token', currentVersion: 1, metadata: { a: 'b' } });
    await expect(secrets.create('k1', 'TOKEN', 'x')).rejects.toThrow(/already exists/);
    await secrets.create('k2', 'token', 'theirs'); // another key's, of the same name
    expect((await secrets.update('k1', made.secretID, 'two')).currentVersion).toBe(2);
    expect(await secrets.value('k1', 'token')).toBe('two');
    expect(await secrets.value('k2', 'token')).toBe('theirs');
    await expect(secrets.get('k2', made.secretID)).rejects.toThrow(/not found/);
    expect((await secrets.list('k1')).map((x) => x.name)).toEqual(['token']);
    await secrets.delete('k1', 'token');
    await expect(secrets.value('k1', 'token')).rejects.toThrow(/not found/);

    const keys = clusterKeys(store.db);
    const parent = await keys.create('parent', 'root');
    const child = await keys.create('child', parent.record.id);
    const grandchild = await keys.create('grandchild', child.record.id);
    expect((await store.apiKeyByHash(hashApiKey(grandchild.key)))?.id).toBe(grandchild.record.id);
    expect(await keys.revoke(parent.record.id)).toEqual([
      parent.record.id,
      child.record.id,
      grandchild.record.id,
    ]);
    expect(await store.apiKeyByHash(hashApiKey(grandchild.key))).toBeUndefined();
    await expect(keys.revoke(parent.record.id)).rejects.toThrow(/not found/);
  });

  it.runIf(engine === 'postgres')('survives a restart of PostgreSQL (statements retried)', async () => {
    await store.heartbeat(beat('r'), 1);
    pg!.restart();
    expect((await store.getNode('r'))?.name).toBe('r');
    await store.heartbeat(beat('r'), 2);
    expect((await store.getNode('r'))?.lastSeen).toBe(2);
  });
});
