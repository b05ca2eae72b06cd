import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import type { AuditEvent } from '../src/audit/index.ts';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, sh, startTestCove, stopTestCove, testConfig } from './helpers.ts';

/** `name{a="b",...} value` lines of Prometheus' text format, keyed by name and sorted labels. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not Prometheus text: ${line}`);
    const labels = [...(m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)]
      .map(([, k, v]) => `${k}=${v}`)
      .sort()
      .join(',');
    out.set(`${m[1]}{${labels}}`, Number(m[3]));
  }
  return out;
}

/**
 * Issue 15: Prometheus metrics moved by exactly the work done, an audit trail of a command, a
 * file write and a kill (in order, with their fields) that survives a restart, a flood that
 * stays bounded, request ids, getMetrics samples, and the keys these endpoints require.
 */
describe.skipIf(!canRunSandboxes)('observability: metrics, audit trail, logs', () => {
  const config: Config = {
    ...testConfig(),
    audit: { enabled: true, perSandbox: 200, retentionMs: 86_400_000, outputBytes: 64 },
  };
  let cove: Cove & { config: Config; apiKey: string };

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${cove.url}${path}`, {
      ...init,
      headers: { 'x-api-key': cove.apiKey, ...(init.headers as Record<string, string>) },
    });
  const scrape = async () => {
    const res = await api('/metrics');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return parseMetrics(await res.text());
  };
  const audit = async (query: string): Promise<AuditEvent[]> => {
    const res = await api(`/cove/v1/audit?${query}`);
    expect(res.status).toBe(200);
    return ((await res.json()) as { events: AuditEvent[] }).events;
  };

  beforeAll(async () => {
    cove = await startTestCove(config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('serves metrics and the audit trail only with a key', async () => {
    for (const path of ['/metrics', '/cove/v1/audit']) {
      expect((await fetch(`${cove.url}${path}`)).status).toBe(401);
      expect(
        (await fetch(`${cove.url}${path}`, { headers: { 'x-api-key': 'e2b_' + '0'.repeat(40) } })).status,
      ).toBe(401);
    }
    // The refusals themselves are on the trail, with no key.
    const refused = (await audit('action=api')).filter((e) => e.fields.status === 401);
    expect(refused.length).toBeGreaterThanOrEqual(4);
    expect(refused[0]).toMatchObject({ keyId: null, sandboxId: null, outcome: 'unauthenticated' });
  });

  it('moves the counters by exactly the work done, and getMetrics returns samples', async () => {
    const get = (m: Map<string, number>, key: string) => m.get(key) ?? 0;
    const before = await scrape();
    const sbx = await Sandbox.create('base');
    expect((await sbx.commands.run('true')).exitCode).toBe(0);
    await expect(sbx.commands.run('exit 3')).rejects.toMatchObject({ exitCode: 3 });
    await sbx.files.write('/tmp/metrics.txt', 'x');
    const samples = await sbx.getMetrics();
    expect(samples.length).toBeGreaterThan(0);
    expect(samples[0]!.memUsed).toBeGreaterThan(0);
    await sbx.kill();
    const after = await scrape();
    const delta = (key: string) => get(after, key) - get(before, key);
    expect(delta('cove_sandbox_creates_total{backend=crun,source=cold,template=base}')).toBe(1);
    expect(delta('cove_sandbox_create_seconds_count{source=cold,template=base}')).toBe(1);
    expect(delta('cove_commands_total{outcome=ok}')).toBe(1);
    expect(delta('cove_commands_total{outcome=failed}')).toBe(1);
    expect(delta('cove_command_seconds_count{}')).toBe(2);
    expect(delta('cove_agent_calls_total{op=spawn,outcome=ok}')).toBe(2);
    expect(delta('cove_agent_calls_total{op=write,outcome=ok}')).toBe(1);
    expect(delta('cove_sandbox_kills_total{reason=requested}')).toBe(1);
    expect(delta('cove_http_requests_total{method=DELETE,route=/sandboxes/:id,status=204}')).toBe(1);
    expect(get(after, 'cove_host_cpus{}')).toBeGreaterThan(0);
    expect(get(after, 'cove_host_memory_available_bytes{}')).toBeGreaterThan(0);
    expect(get(after, 'cove_host_disk_available_bytes{}')).toBeGreaterThan(0);
    expect(
      after.has('cove_sandboxes{backend=crun,state=running,template=base}') ? 1 : 0,
    ).toBeGreaterThanOrEqual(0);
  });

  it('records a command, a file write and a kill in order, and keeps them across a restart', async () => {
    const sbx = await Sandbox.create('base', { metadata: { purpose: 'audit' } });
    const id = sbx.sandboxId;
    await sbx.commands.run('echo hello; echo oops >&2', { user: 'user', cwd: '/tmp' });
    const content = 'audited content';
    await sbx.files.write('/home/user/audit.txt', content);
    await sbx.files.rename('/home/user/audit.txt', '/home/user/moved.txt');
    await sbx.files.remove('/home/user/moved.txt');
    await sbx.kill();

    const check = (events: AuditEvent[]) => {
      const actions = events.map((e) => e.action).filter((a) => a !== 'api');
      expect(actions).toEqual([
        'sandbox.create',
        'process.start',
        'process.end',
        'file.write',
        'file.rename',
        'file.remove',
        'sandbox.kill',
      ]);
      const of = (action: string) => events.find((e) => e.action === action)!;
      const keyId = of('sandbox.create').keyId;
      expect(keyId).toEqual(expect.stringMatching(/\S/));
      expect(of('sandbox.create').fields).toMatchObject({ template: 'base', pooled: false });
      expect(of('process.start').fields).toMatchObject({
        argv: ['/bin/bash', '-l', '-c', 'echo hello; echo oops >&2'],
        user: 'user',
        uid: 1000,
        cwd: '/tmp',
      });
      const end = of('process.end');
      expect(end).toMatchObject({ outcome: 'ok' });
      expect(end.fields).toMatchObject({
        pid: of('process.start').fields.pid,
        exitCode: 0,
        stdoutBytes: 6,
        stderrBytes: 5,
        stdout: 'hello\n', // COVE_AUDIT_OUTPUT_BYTES is 64 here; 0 by default
      });
      expect(end.fields.durationMs).toEqual(expect.any(Number));
      expect(of('file.write').fields).toMatchObject({
        path: '/home/user/audit.txt',
        size: content.length,
        sha256: createHash('sha256').update(content).digest('hex'),
        uid: 1000,
      });
      expect(of('file.rename').fields).toMatchObject({
        from: '/home/user/audit.txt',
        to: '/home/user/moved.txt',
      });
      expect(of('file.remove').fields).toMatchObject({ path: '/home/user/moved.txt' });
      expect(of('sandbox.kill')).toMatchObject({ keyId, fields: { reason: 'requested' } });
      const deleted = events.find((e) => e.action === 'api' && e.fields.method === 'DELETE')!;
      expect(deleted).toMatchObject({
        keyId,
        outcome: 'ok',
        fields: { route: '/sandboxes/:id', status: 204 },
      });
      // The API's record comes once the kill is done, before the reply leaves.
      expect(deleted.seq).toBeGreaterThan(of('sandbox.kill').seq);
    };
    const events = await audit(`sandbox=${id}`);
    check(events);

    await cove.close();
    cove = await startTestCove(config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    check(await audit(`sandbox=${id}`));
    // Its log too, though it stopped before the restart (sandbox-logs.db).
    const logs = (await (await api(`/v2/sandboxes/${id}/logs`)).json()) as {
      logs: Array<{ message: string }>;
    };
    expect(logs.logs.map((l) => l.message)).toEqual(
      expect.arrayContaining(['sandbox created', 'kill requested', 'sandbox stopped']),
    );

    // JSON lines export of the same records; by key, too.
    const res = await api(`/cove/v1/audit?sandbox=${id}&format=jsonl`);
    expect(res.headers.get('content-type')).toBe('application/x-ndjson');
    const lines = (await res.text()).trimEnd().split('\n');
    expect(lines.map((l) => (JSON.parse(l) as AuditEvent).seq)).toEqual(events.map((e) => e.seq));
    // By key: the API calls and what they caused; envd's calls (the SDK's commands and files)
    // authenticate with the sandbox's access token, not a key.
    const keyId = events[0]!.keyId!;
    const byKey = await audit(`key=${keyId}&since=${events[0]!.at}`);
    const ofKey = events.filter((e) => e.keyId === keyId).map((e) => e.seq);
    expect(ofKey.length).toBeGreaterThanOrEqual(3); // create, kill, and the API's records
    expect(byKey.map((e) => e.seq)).toEqual(expect.arrayContaining(ofKey));
    expect(events.filter((e) => e.action.startsWith('process.')).every((e) => e.keyId === null)).toBe(true);

    // The CLI reads the same trail.
    // Asynchronously: this process serves the CLI's requests.
    const { stdout: out } = await promisify(execFile)(
      join(cove.config.root, 'bin', 'cove'),
      ['audit', '--sandbox', id, '--jsonl'],
      { env: { ...process.env, COVE_URL: cove.url, COVE_API_KEY: cove.apiKey } },
    );
    expect(out.trimEnd().split('\n')).toHaveLength(events.length);
  });

  it('carries the request id into the reply and the records the request caused', async () => {
    const res = await api('/v2/sandboxes', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'obs-test-1' },
      body: JSON.stringify({ templateID: 'base', timeout: 60 }),
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('x-request-id')).toBe('obs-test-1');
    const { sandboxID } = (await res.json()) as { sandboxID: string };
    const [created] = await audit(`sandbox=${sandboxID}&action=sandbox.create`);
    expect(created).toMatchObject({ requestId: 'obs-test-1' });
    await cove.manager.kill(sandboxID);
    // No key made the manager's kill: nor the request of the create.
    const [killed] = await audit(`sandbox=${sandboxID}&action=sandbox.kill`);
    expect(killed).toMatchObject({ requestId: null, keyId: null });
  });

  it("puts the start command's output and the lifecycle in the sandbox's log, read by the CLI", async () => {
    const { id } = await cove.manager.create({ template: 'code-interpreter-v1', timeoutMs: 120_000 });
    try {
      type Entry = { message: string; fields: Record<string, string> };
      let logs: Entry[] = [];
      for (let i = 0; i < 100 && !logs.some((e) => e.fields.source === 'start'); i++) {
        await new Promise((r) => setTimeout(r, 100));
        logs = ((await (await api(`/v2/sandboxes/${id}/logs`)).json()) as { logs: Entry[] }).logs;
      }
      expect(logs.filter((e) => e.fields.source === 'start').length).toBeGreaterThan(0);
      const { stdout } = await promisify(execFile)(
        join(cove.config.root, 'bin', 'cove'),
        ['sandbox', 'logs', id],
        {
          env: { ...process.env, COVE_URL: cove.url, COVE_API_KEY: cove.apiKey },
        },
      );
      expect(stdout).toContain('source=start');
    } finally {
      await cove.manager.kill(id);
    }
  });

  it('records pauses, resumes and network policy changes, with their key', async () => {
    const sbx = await Sandbox.create('base', { timeoutMs: 120_000 });
    try {
      await sbx.updateNetwork({ denyOut: ['203.0.113.0/24'] });
      expect(await sbx.pause()).toBe(true);
      await sbx.connect();
      const events = (await audit(`sandbox=${sbx.sandboxId}`)).filter((e) => e.action !== 'api');
      expect(events.map((e) => [e.action, e.outcome])).toEqual([
        ['sandbox.create', 'ok'],
        ['network.policy', 'ok'],
        ['sandbox.pause', 'ok'],
        ['sandbox.resume', 'ok'],
      ]);
      expect(events[1]!.fields).toMatchObject({ denyOut: ['203.0.113.0/24'] });
      expect(events[3]!.fields).toMatchObject({ resumed: true });
      expect(new Set(events.map((e) => e.keyId)).size).toBe(1);
      expect(events[0]!.keyId).not.toBeNull();
    } finally {
      await sbx.kill();
    }
  });

  it('keeps a flood of commands in one sandbox within its bound', async () => {
    const { id } = await cove.manager.create({ template: 'base', timeoutMs: 120_000 });
    try {
      await sh(cove.manager, id, 'true');
      for (let i = 0; i < 150; i++) await sh(cove.manager, id, `exit ${i % 2}`);
      const res = await api(`/cove/v1/audit?sandbox=${id}`);
      const page = (await res.json()) as { events: AuditEvent[]; dropped: number };
      expect(page.events.length).toBeLessThanOrEqual(200);
      expect(page.events[0]!.action).toBe('sandbox.create');
      expect(page.events.at(-1)).toMatchObject({ action: 'process.end', fields: { exitCode: 1 } });
      expect(page.dropped + page.events.length).toBe(1 + 2 * 151);
    } finally {
      await cove.manager.kill(id);
    }
  });
});
