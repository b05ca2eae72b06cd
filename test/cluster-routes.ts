import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { expect, it } from 'vitest';
import { nodeSecret, sign, TOKEN_HEADER } from '../src/cluster/auth.ts';
import { createSealer, SECRET_TRANSIT } from '../src/cluster/seal.ts';
import { testApiKey } from './helpers.ts';
import { until, type ClusterContext } from './cluster-resources.ts';

/**
 * What `cove serve` offers beyond sandboxes and their resources, through `cove api`: secrets
 * (kept in the cluster store; a node's egress proxy gets a value only for its own sandbox),
 * the console's key management, its page and its `/cove/v1` reads gathered over the nodes
 * (sandbox events merged, host figures summed, builds, pools, audit, metrics, usage), the
 * nodes' Prometheus metrics and workload identity keys through a replica, the CLI's exec
 * and Cove's MCP server (a session on one node, reached through either replica, its sandboxes
 * placed). Runs inside cluster.test.ts, on its cluster (src/cluster/gathered.ts, mcp.ts).
 */
export function routeCases(ctx: ClusterContext & { clusterSecret: string }): void {
  const placedOn = async (id: string) => (await ctx.store().getPlacement(id))?.node;
  const api = (i: number, path: string, init: RequestInit = {}, key = testApiKey) =>
    fetch(`${ctx.useApi(i)}${path}`, {
      ...init,
      headers: { 'x-api-key': key, 'content-type': 'application/json', ...init.headers },
    });

  it('secrets: kept by the cluster, served by either replica; a node gets a value only for its own sandbox', async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox, Secret } = await import('e2b');
    ctx.useApi(0);
    const made = await Secret.create('cluster-token', 'first', { metadata: { team: 'a' } });
    await expect(Secret.create('cluster-token', 'again')).rejects.toThrow(/already exists/);
    ctx.useApi(1);
    expect((await Secret.getInfo('cluster-token')).secretId).toBe(made.secretId);
    expect((await Secret.update('cluster-token', 'second')).version).toBe(2);
    expect((await Secret.list().nextItems()).map((s) => s.name)).toContain('cluster-token');
    const sbx = await Sandbox.create('base', { timeoutMs: 60_000 });
    const node = (await placedOn(sbx.sandboxId))!;
    const other = ['n0', 'n1', 'n2'].find((n) => n !== node)!;
    // What a node's egress proxy asks (src/cluster/node.ts), signed as `as`.
    const ask = (as: string) =>
      fetch(`${ctx.useApi(0)}/cluster/v1/secret`, {
        method: 'POST',
        headers: { [TOKEN_HEADER]: sign(nodeSecret(ctx.clusterSecret, as), 'node-to-api', { node: as }) },
        body: JSON.stringify({ name: as, sandbox: sbx.sandboxId, secret: 'cluster-token' }),
      });
    const got = (await (await ask(node)).json()) as { sealed: string };
    const transit = createSealer(nodeSecret(ctx.clusterSecret, node), SECRET_TRANSIT);
    expect(transit.open(got.sealed)).toBe('second');
    expect(JSON.stringify(got)).not.toContain('second');
    expect((await ask(other)).status).toBe(404); // not its sandbox
    const forged = await fetch(`${ctx.useApi(0)}/cluster/v1/secret`, {
      method: 'POST',
      headers: { [TOKEN_HEADER]: sign(nodeSecret(ctx.clusterSecret, other), 'node-to-api', { node: node }) },
      body: JSON.stringify({ name: node, sandbox: sbx.sandboxId, secret: 'cluster-token' }),
    });
    expect(forged.status).toBe(401); // another node's secret cannot sign as this one
    // The value is sealed at rest: the database holds no plain text.
    const rows = await ctx.store().db.query<{ value: string }>('SELECT value FROM secrets');
    expect(rows.map((r) => r.value).join()).not.toContain('second');
    ctx.useApi(0);
    expect(await Secret.destroy('cluster-token')).toBe(true);
    expect((await ask(node)).status).toBe(404);
    await sbx.kill();
  });

  it("keys: the console's key management through a replica, a revocation counting at every replica", async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const listed = (await (await api(0, '/cove/v1/keys')).json()) as {
      keys: Array<{ id: string; current: boolean }>;
    };
    expect(listed.keys.find((k) => k.current)?.id).toBe('key_test');
    const child = (await (
      await api(0, '/cove/v1/keys', { method: 'POST', body: '{"name":"child"}' })
    ).json()) as {
      id: string;
      key: string;
      createdBy: string;
    };
    expect(child.createdBy).toBe('key_test');
    const grandchild = (await (
      await api(1, '/cove/v1/keys', { method: 'POST', body: '{"name":"grandchild"}' }, child.key)
    ).json()) as { id: string; key: string };
    expect((await api(1, '/v2/sandboxes', {}, grandchild.key)).status).toBe(200);
    const revoked = (await (await api(1, `/cove/v1/keys/${child.id}`, { method: 'DELETE' })).json()) as {
      revoked: string[];
    };
    expect(revoked.revoked).toEqual([child.id, grandchild.id]);
    expect((await api(0, '/v2/sandboxes', {}, grandchild.key)).status).toBe(401);
    expect((await api(0, '/cove/v1/keys', { method: 'POST', body: '{"name":"{bad}"}' })).status).toBe(400);
  });

  it('the console: its page, and its reads gathered over every node; sandbox events from every node in one stream; exec', async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox } = await import('e2b');
    const page = await fetch(`${ctx.useApi(1)}/console/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/<html/i);
    const host = (await (await api(1, '/cove/v1/host')).json()) as {
      cpus: number;
      nodes: Array<{ name: string; cpus: number }>;
      sandboxes: Record<string, Record<string, number>>;
    };
    const up = (await ctx.store().listNodes()).filter((n) => n.state !== 'lost').map((n) => n.name);
    expect(host.nodes.map((n) => n.name).sort()).toEqual(up.sort());
    expect(host.cpus).toBe(host.nodes.reduce((s, n) => s + n.cpus, 0));
    expect((await api(0, '/cove/v1/pools')).status).toBe(200);
    expect(Array.isArray(await (await api(0, '/cove/v1/builds')).json())).toBe(true);
    expect((await api(0, '/cove/v1/templates')).status).toBe(200);
    // Prometheus through a replica (nodes admit only replicas): each family once, every node's samples.
    const metrics = await (await api(1, '/metrics')).text();
    expect(metrics.match(/^# TYPE cove_sandboxes gauge$/gm)).toHaveLength(1);
    for (const n of up) expect(metrics).toMatch(new RegExp(`^cove_sandboxes\\{node="${n}"`, 'm'));
    const usage = (await (await api(0, '/cove/v1/usage')).json()) as { keyId: string; requests: number };
    expect(usage).toMatchObject({ keyId: 'key_test', requests: 0 });
    // Workload identity's keys, without a key: every node signs with its own.
    const jwks = (await (await fetch(`${ctx.useApi(0)}/.well-known/jwks.json`)).json()) as {
      keys: unknown[];
    };
    expect(jwks.keys.length).toBeGreaterThanOrEqual(up.length);
    const discovery = await fetch(`${ctx.useApi(0)}/.well-known/openid-configuration`);
    expect(((await discovery.json()) as { jwks_uri: string }).jwks_uri).toMatch(
      /\/\.well-known\/jwks\.json$/,
    );

    // Events: one stream through replica 0, sandboxes made on different nodes through replica 1.
    const abort = new AbortController();
    const res = await api(0, '/cove/v1/sandbox-events', { signal: abort.signal });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const seen = (pattern: RegExp) =>
      until(async () => {
        if (pattern.test(text)) return true;
        const { value, done } = await reader.read();
        if (done) throw new Error(`events ended: ${text}`);
        text += value;
        return pattern.test(text);
      }, 30_000);
    await seen(/event: ready/);
    ctx.useApi(1);
    const made = [];
    const nodes = new Set<string>();
    while (nodes.size < 2 && made.length < 6) {
      const s = await Sandbox.create('base', { timeoutMs: 60_000 });
      made.push(s);
      nodes.add((await placedOn(s.sandboxId))!);
    }
    for (const s of made) await seen(new RegExp(`event: created\\ndata: \\{"sandboxID":"${s.sandboxId}"\\}`));
    // Metrics of sandboxes on several nodes in one call; one sandbox's audit trail from its node.
    const latest = await api(0, `/sandboxes/metrics?sandbox_ids=${made.map((s) => s.sandboxId).join(',')}`);
    expect(latest.status).toBe(200);
    const audit = (await (await api(0, `/cove/v1/audit?sandbox=${made[0]!.sandboxId}`)).json()) as {
      events: Array<{ action: string }>;
    };
    expect(audit.events.map((e) => e.action)).toContain('sandbox.create');
    // The CLI's streaming exec reaches a sandbox on its node.
    const exec = await api(1, `/cove/v1/sandboxes/${made[0]!.sandboxId}/exec`, {
      method: 'POST',
      body: JSON.stringify({ argv: ['echo', 'exec through a replica'] }),
    });
    const lines = (await exec.text())
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { type: string; data?: string });
    expect(lines.at(-1)).toMatchObject({ type: 'exit', exitCode: 0 });
    const out = lines
      .filter((l) => l.type === 'stdout')
      .map((l) => Buffer.from(l.data!, 'base64').toString());
    expect(out.join('')).toBe('exec through a replica\n');
    for (const s of made) await s.kill();
    for (const s of made) await seen(new RegExp(`event: killed\\ndata: \\{"sandboxID":"${s.sandboxId}"\\}`));
    abort.abort();
    // What no replica serves yet says so.
    const refused = await api(0, '/databases');
    expect(refused.status).toBe(400);
    expect(((await refused.json()) as { message: string }).message).toMatch(
      /not supported behind cove api yet/,
    );
  });

  it("Cove's MCP server: a session on one node through either replica; its sandboxes are placed", async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox } = await import('e2b');
    const connect = async (i: number, sessionId?: string) => {
      const transport = new StreamableHTTPClientTransport(new URL('/mcp', ctx.useApi(i)), {
        requestInit: { headers: { 'x-api-key': testApiKey } },
        ...(sessionId && { sessionId }),
      });
      const client = new Client({ name: 'cluster-test', version: '1' });
      await client.connect(transport);
      return { client, transport };
    };
    const call = async <T>(client: Client, name: string, args: Record<string, unknown>) => {
      const r = (await client.callTool({ name, arguments: args })) as CallToolResult;
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      return r.structuredContent as T;
    };
    const first = await connect(0);
    const sessionId = first.transport.sessionId!;
    const home = (await ctx.store().getHome('mcp', sessionId))?.node;
    expect(home).toMatch(/^n\d$/);
    const { sandboxId } = await call<{ sandboxId: string }>(first.client, 'sandbox_create', {
      timeoutSeconds: 60,
    });
    // Placed on the session's node by that node, so that the SDK reaches it through any replica.
    expect(await until(() => placedOn(sandboxId), 10_000)).toBe(home);
    ctx.useApi(1);
    expect((await (await Sandbox.connect(sandboxId)).commands.run('echo via sdk')).stdout).toBe('via sdk\n');
    // The same session through the other replica.
    const again = await connect(1, sessionId);
    const ran = await call<{ stdout: string }>(again.client, 'run_command', {
      sandboxId,
      command: 'echo via mcp',
    });
    expect(ran.stdout).toBe('via mcp\n');
    // Another key does not reach the session.
    const stranger = await fetch(`${ctx.useApi(1)}/mcp`, {
      method: 'POST',
      headers: { 'x-api-key': 'e2b_' + '7'.repeat(40), 'mcp-session-id': sessionId },
    });
    expect(stranger.status).toBe(401);
    await call(again.client, 'sandbox_kill', { sandboxId });
    await again.transport.terminateSession();
    expect(await ctx.store().getHome('mcp', sessionId)).toBeUndefined();
    await first.client.close();
    await again.client.close();
  });
}
