import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Sandbox } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeSecret, sign, TOKEN_HEADER } from '../src/cluster/auth.ts';
import { openPostgresDb } from '../src/cluster/db-postgres.ts';
import { openClusterStore, type ClusterStore } from '../src/cluster/store.ts';
import { hashApiKey } from '../src/keys/keys.ts';
import { canRunSandboxes, hostLeftovers, templateBuilt, testApiKey } from './helpers.ts';
import { makeHosts, spawnCove, type Hosts, type Proc } from './cluster-hosts.ts';
import { resourceCases, until } from './cluster-resources.ts';
import { drainCases } from './cluster-drain.ts';
import { routeCases } from './cluster-routes.ts';
import { startTestPostgres, type TestPostgres } from './postgres.ts';

// One machine as several hosts (docs/scale-out.md): a real PostgreSQL, two `cove api`
// replicas on the host and three `cove node`s, each in a network namespace of its own, all
// child processes, driven through the e2b SDK.
const prefix = process.env.COVE_TEST_INSTANCE ?? 'covet';
const net = process.env.COVE_TEST_SUBNET ?? '10.12';
// Each node's sandboxes get a /16 of their own inside its namespace.
const nodeSubnets = (process.env.COVE_TEST_NODE_SUBNETS ?? '10.59,10.60,10.61').split(',');
const instance = (i: number) => `${prefix.replace(/[^a-z]/g, '')}${'abc'[i]}`.slice(0, 8);
const secret = randomBytes(32).toString('hex');
const templatesHome = process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';

describe.skipIf(!canRunSandboxes)('several Cove nodes behind two API replicas', () => {
  let pg: TestPostgres;
  let store: ClusterStore;
  let hosts: Hosts;
  const apis: Proc[] = [];
  const nodes: Array<Proc | undefined> = [];
  // Named by instance, not random: a run that died without its afterAll left sandboxes there,
  // which the next run's nodes adopt at start (their reconcile) and the afterAll removes. So
  // in /tmp itself, not in this file's TMPDIR (test/tmp-check.ts), which goes with the run.
  const homes = [0, 1, 2].map((i) => join('/tmp', `cove-node-${instance(i)}`));
  for (const h of homes) mkdirSync(h, { recursive: true });
  let ready = false;

  const startNode = (i: number) =>
    spawnCove(
      'node',
      {
        COVE_HOME: homes[i]!,
        COVE_INSTANCE: instance(i),
        COVE_SUBNET: nodeSubnets[i]!,
        COVE_TEMPLATES_HOME: templatesHome,
        COVE_HOST: hosts.nodeAddress(i),
        COVE_PORT: '3000',
        COVE_NODE_NAME: `n${i}`,
        COVE_NODE_SECRET: nodeSecret(secret, `n${i}`),
        COVE_API_URLS: apis.map((a) => a.url).join(','),
        COVE_HEARTBEAT_MS: '500',
        COVE_POOL_MIN: '0',
        COVE_POOL_MAX: '0',
        COVE_POOL_BUDGET: '0',
      },
      hosts.netns(i),
    );

  const useApi = (i: number) => {
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = process.env.E2B_VOLUME_API_URL = apis[i]!.url;
    process.env.E2B_API_KEY = testApiKey;
    return apis[i]!.url;
  };

  /**
   * Every sandbox a node runs, removed through that node's own API (signed as a replica), so
   * that a case failing midway leaves nothing behind, placed or not; a node found dead is
   * started again first (it adopts what it ran).
   */
  async function reclaim(i: number): Promise<void> {
    if (nodes[i]?.child.exitCode !== null) nodes[i] = await startNode(i);
    // The node takes the caller from the token; its key check still wants a key header.
    const headers = () => ({
      [TOKEN_HEADER]: sign(nodeSecret(secret, `n${i}`), 'api-to-node', { keyId: 'key_test' }),
      'x-api-key': testApiKey,
    });
    const base = `http://${hosts.nodeAddress(i)}:3000`;
    const res = await fetch(`${base}/v2/sandboxes`, { headers: headers() });
    if (!res.ok) throw new Error(`list: ${res.status} ${await res.text()}`);
    for (const s of (await res.json()) as Array<{ sandboxID: string }>) {
      const del = await fetch(`${base}/sandboxes/${s.sandboxID}`, { method: 'DELETE', headers: headers() });
      if (!del.ok && del.status !== 404) throw new Error(`kill ${s.sandboxID}: ${del.status}`);
    }
  }

  beforeAll(async () => {
    if (!(await templateBuilt('base'))) return;
    pg = startTestPostgres();
    store = await openClusterStore(openPostgresDb(pg.url));
    await store.insertApiKey({
      id: 'key_test',
      name: 'test',
      hash: hashApiKey(testApiKey),
      mask: 'e2b_…',
      createdAt: 0,
    });
    hosts = makeHosts(prefix, net, 3);
    for (let i = 0; i < 2; i++)
      apis.push(
        await spawnCove('api', {
          COVE_DATABASE_URL: pg.url,
          COVE_CLUSTER_SECRET: secret,
          COVE_HOST: hosts.bridgeAddress,
          COVE_PORT: '0',
          COVE_NODE_STALE_MS: '3000',
          COVE_PLACEMENT_GRACE_MS: '10000',
        }),
      );
    for (let i = 0; i < 3; i++) nodes.push(await startNode(i));
    await until(async () => (await store.listNodes()).filter((n) => n.state === 'up').length === 3, 30_000);
    ready = true;
  });

  afterAll(async () => {
    const leftovers: string[] = [];
    try {
      if (ready)
        for (let i = 0; i < 3; i++)
          await reclaim(i).catch((err: unknown) => leftovers.push(`node n${i}: ${String(err)}`));
    } finally {
      // Stopped, not killed: a node's sandboxes (none by now) would keep running either way.
      await Promise.all(nodes.map((n) => n?.stop() ?? Promise.resolve()));
      await Promise.all(apis.map((a) => a.kill()));
      if (ready) for (let i = 0; i < 3; i++) leftovers.push(...hostLeftovers(instance(i), homes[i]!));
      hosts?.remove();
      await store?.close();
      pg?.stop();
      if (leftovers.length === 0) for (const h of homes) rmSync(h, { recursive: true, force: true });
    }
    expect(leftovers).toEqual([]);
  });

  const placedOn = async (id: string) => (await store.getPlacement(id))?.node;

  it('spreads creates through either replica over the nodes; commands, files and ports reach each', async ({
    skip,
  }) => {
    if (!ready) skip();
    const { Sandbox } = await import('e2b');
    const sandboxes: Sandbox[] = [];
    for (let i = 0; i < 6; i++) {
      useApi(i % 2);
      sandboxes.push(await Sandbox.create('base', { timeoutMs: 120_000 }));
    }
    const where = await Promise.all(sandboxes.map((s) => placedOn(s.sandboxId)));
    expect(new Set(where)).toEqual(new Set(['n0', 'n1', 'n2']));
    // Through the other replica than the one that created it.
    for (const [i, sbx] of sandboxes.entries()) {
      useApi((i + 1) % 2);
      const again = await Sandbox.connect(sbx.sandboxId);
      const run = await again.commands.run(`echo from $(hostname) ${i}`);
      expect(run.stdout.trim()).toMatch(new RegExp(` ${i}$`));
      await again.files.write(`/tmp/f${i}`, `content ${i}`);
      expect(await again.files.read(`/tmp/f${i}`)).toBe(`content ${i}`);
    }
    // A port preview on one sandbox per node, by host name, through replica 1.
    const perNode = new Map(where.map((n, i) => [n, sandboxes[i]!]));
    for (const sbx of perNode.values()) {
      await sbx.commands.run('mkdir -p /tmp/www && echo served-$(hostname) > /tmp/www/index.html');
      await sbx.commands.run('cd /tmp/www && python3 -m http.server 8000', { background: true });
      const { hostname, port } = new URL(apis[1]!.url);
      const body = await until(async () => {
        const r = await get(hostname, Number(port), `8000-${sbx.sandboxId}.localhost:${port}`);
        return r.status === 200 ? r.body : undefined;
      }, 15_000);
      expect(body).toMatch(/^served-/);
    }
    // Listing through a replica shows them all, once each.
    useApi(1);
    const listed = (await Sandbox.list().nextItems()).map((s) => s.sandboxId);
    expect(listed.sort()).toEqual(sandboxes.map((s) => s.sandboxId).sort());
    // Paged across the nodes (src/cluster/list.ts): each sandbox once, newest first, any limit.
    const infos = await Promise.all(sandboxes.map((s) => Sandbox.getInfo(s.sandboxId)));
    const newestFirst = infos
      .sort((a, b) => b.startedAt.getTime() - a.startedAt.getTime() || (a.sandboxId < b.sandboxId ? 1 : -1))
      .map((s) => s.sandboxId);
    for (const limit of [1, 2, 4]) {
      const pager = Sandbox.list({ limit });
      const paged: string[] = [];
      while (pager.hasNext) {
        const items = await pager.nextItems();
        expect(items.length).toBeLessThanOrEqual(limit);
        paged.push(...items.map((s) => s.sandboxId));
      }
      expect(paged, `limit ${limit}`).toEqual(newestFirst);
    }
  });

  const context = { ready: () => ready, store: () => store, useApi };
  resourceCases(context);
  routeCases({ ...context, clusterSecret: secret });

  it('a node killed -9: its sandboxes are marked lost, creates go on elsewhere, and its return reclaims them', async ({
    skip,
  }) => {
    if (!ready) skip();
    const { Sandbox } = await import('e2b');
    useApi(0);
    const victim = (await store.listPlacements('n0')).filter((p) => p.state === 'running');
    expect(victim.length).toBeGreaterThan(0);
    await nodes[0]!.kill();
    const killedAt = Date.now();
    // Creates right after the kill, before any replica has noticed: none fails, none lands on n0.
    const fresh = [];
    for (let i = 0; i < 3; i++) {
      useApi(i % 2);
      fresh.push(await Sandbox.create('base', { timeoutMs: 60_000 }));
    }
    for (const s of fresh) expect(await placedOn(s.sandboxId)).not.toBe('n0');
    await until(async () => (await store.getPlacement(victim[0]!.id))?.state === 'lost', 20_000);
    console.log(`node death to its sandboxes marked lost: ${Date.now() - killedAt} ms`);
    useApi(1);
    const listed = (await Sandbox.list().nextItems()).map((s) => s.sandboxId);
    for (const p of victim) expect(listed).not.toContain(p.id);
    await expect(Sandbox.getInfo(victim[0]!.id)).rejects.toThrow(/lost|not found/i);
    // Still running on the dead node's host, until it returns.
    const netns = () => execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    expect(netns()).toContain(`${instance(0)}-${victim[0]!.id}`);
    nodes[0] = await startNode(0);
    await until(async () => (await store.listPlacements('n0')).length === 0, 30_000);
    await until(() => victim.every((p) => !netns().includes(`${instance(0)}-${p.id}`)), 15_000);
    expect((await store.getNode('n0'))?.state).toBe('up');
  });
  it('an API replica killed -9 mid-burst loses no acknowledged sandbox, and a PostgreSQL restart is survived', async ({
    skip,
  }) => {
    if (!ready) skip();
    const { Sandbox } = await import('e2b');
    useApi(1);
    // Settled from the start: the creates cut by the kill must not count as unhandled rejections.
    const burst = Promise.allSettled(
      Array.from({ length: 4 }, () => Sandbox.create('base', { timeoutMs: 60_000 })),
    );
    await new Promise((r) => setTimeout(r, 300));
    await apis[1]!.kill();
    const acknowledged = (await burst).flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    useApi(0);
    for (const sbx of acknowledged) {
      expect((await store.getPlacement(sbx.sandboxId))?.state).toBe('running');
      const again = await Sandbox.connect(sbx.sandboxId);
      expect((await again.commands.run('echo ok')).stdout).toBe('ok\n');
    }
    pg.restart();
    const after = await Sandbox.create('base', { timeoutMs: 60_000 });
    expect((await after.commands.run('echo after')).stdout).toBe('after\n');
    expect((await Sandbox.list().nextItems()).map((s) => s.sandboxId)).toContain(after.sandboxId);
    // Creates the dead replica forwarded but never answered: their nodes remove them after the grace.
    const running = () =>
      execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
        .split('\n')
        .map((l) => /^([a-z]+)-([a-z0-9]{20})\b/.exec(l))
        .filter((m) => m !== null && [0, 1, 2].some((i) => m[1] === instance(i)))
        .map((m) => m![2]!);
    await until(async () => {
      const placed = new Set((await store.listPlacements()).map((p) => p.id));
      return running().every((id) => placed.has(id));
    }, 40_000);
  });

  // After the replica kill above: replica 0 is the one left.
  drainCases({ ...context, api: 0 });
});

function get(host: string, port: number, hostHeader: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', headers: { host: hostHeader } }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}
