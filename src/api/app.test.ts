import { EventEmitter } from 'node:events';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createSandboxLog } from '../audit/sandbox-log.ts';
import { CoveError } from '../core/errors.ts';
import type { CreateSandboxInput, Manager, SandboxInfo } from '../manager/manager.ts';
import { OPEN_NETWORK } from '../network/egress-policy.ts';
import { createApi } from './app.ts';

const KEY = `e2b_${'1'.repeat(40)}`;

/** The reply fields these tests read; lists are read through `items`. */
interface Reply {
  code?: number;
  message?: string;
  sandboxID?: string;
  envdAccessToken?: string;
  endAt?: string;
  lifecycle?: unknown;
  logs?: Array<{ line?: string; message?: string }>;
  logEntries?: unknown[];
}
const items = (r: Reply) => r as unknown as Array<{ metadata: unknown }>;

/** The manager's API surface the routes use, in memory: the routes are what is tested here. */
function fakeManager() {
  const sandboxes = new Map<string, SandboxInfo>();
  const created: CreateSandboxInput[] = [];
  const updated: unknown[] = [];
  const get = (id: string) => {
    const s = sandboxes.get(id);
    if (!s) throw new CoveError('not_found', `sandbox ${id} not found`);
    return s;
  };
  const manager = {
    events: new EventEmitter(),
    create(input: CreateSandboxInput) {
      if (input.timeoutMs <= 0) throw new CoveError('invalid_argument', 'Timeout must be greater than 0');
      created.push(input);
      const id = `s${String(sandboxes.size).padStart(19, '0')}`;
      const now = Date.now();
      const info: SandboxInfo = {
        id,
        templateName: input.template,
        state: 'running',
        startedAt: new Date(now),
        endAt: new Date(now + input.timeoutMs),
        metadata: input.metadata ?? {},
        limits: { cpus: 2, memoryMiB: 512, pids: 100 },
        address: '10.0.0.2',
        runtime: 'crun',
        ...(input.secure && { envdAccessToken: 'token' }),
        network: input.network ?? OPEN_NETWORK,
      };
      sandboxes.set(id, info);
      return Promise.resolve(info);
    },
    get,
    list: () => [...sandboxes.values()],
    kill(id: string) {
      get(id);
      sandboxes.delete(id);
      return Promise.resolve();
    },
    setTimeout(id: string, ms: number) {
      return Object.assign(get(id), { endAt: new Date(Date.now() + ms) });
    },
    extendTimeout(id: string, ms: number) {
      const s = get(id);
      if (Date.now() + ms > s.endAt.getTime()) s.endAt = new Date(Date.now() + ms);
      return s;
    },
    updateNetwork(id: string, egress: unknown) {
      get(id);
      updated.push(egress);
      return Promise.resolve();
    },
    resume(id: string, { timeoutMs }: { timeoutMs: number }) {
      const s = get(id);
      const resumed = s.state === 'paused';
      if (resumed) s.endAt = new Date(0);
      s.state = 'running';
      return Promise.resolve({ info: manager.extendTimeout(id, timeoutMs), resumed });
    },
    pause(id: string) {
      const s = get(id);
      if (s.state === 'paused') throw new CoveError('conflict', `sandbox ${id} is already paused`);
      s.state = 'paused';
      return Promise.resolve(s);
    },
    listSnapshots: () => [],
    hasSnapshot: () => false,
    getSnapshot: () => undefined,
    deleteSnapshot: (id: string) => Promise.reject(new CoveError('not_found', `snapshot ${id} not found`)),
    fork(id: string, { count }: { count: number }) {
      const s = get(id);
      if (count < 1) throw new CoveError('invalid_argument', 'count must be from 1');
      return Promise.resolve(Array.from({ length: count }, (_, i) => ({ sandbox: { ...s, id: `f${i}` } })));
    },
  };
  return { manager: manager as unknown as Manager, created, sandboxes, updated };
}

function setup() {
  const fake = fakeManager();
  const app = createApi({
    manager: fake.manager,
    log: pino({ level: 'silent' }),
    verifyKey: (key) => (key === KEY ? { id: 'key_1' } : undefined),
    metrics: { samples: () => [], latest: () => undefined, ensure: () => Promise.resolve() },
    sandboxLog: createSandboxLog(),
    diskSizeMB: () => 1000,
    domain: null,
  });
  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await app.request(path, {
      method,
      headers: { 'X-API-KEY': KEY, 'content-type': 'application/json', ...headers },
      ...(body !== undefined && { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Reply };
  };
  return { ...fake, app, call };
}

describe('API keys on every route but /health', () => {
  it('answers 401 with E2B’s body for a missing or wrong key, and takes a Bearer token', async () => {
    const { app, call } = setup();
    expect((await app.request('/health')).status).toBe(200);
    for (const path of ['/v2/sandboxes', '/sandboxes/x', '/no/such/route']) {
      const res = await app.request(path);
      expect(res.status).toBe(401);
      expect(await res.json()).toEqual({
        code: 401,
        message: expect.stringMatching(/missing API key/) as unknown,
      });
    }
    expect((await call('GET', '/v2/sandboxes', undefined, { 'X-API-KEY': 'e2b_00' })).body).toEqual({
      code: 401,
      message: 'invalid API key',
    });
    const bearer = await app.request('/v2/sandboxes', { headers: { authorization: `Bearer ${KEY}` } });
    expect(bearer.status).toBe(200);
    expect((await call('GET', '/no/such/route')).status).toBe(404);
  });
});

describe('create', () => {
  it('defaults the timeout to 15 s (v1) and 300 s (v2), secure only when asked (v1) or always (v2)', async () => {
    const { call, created } = setup();
    const v1 = await call('POST', '/sandboxes', { templateID: 'base' });
    expect(v1.status).toBe(201);
    expect(v1.body).toMatchObject({
      sandboxID: expect.any(String) as unknown,
      envdVersion: '0.6.13',
      domain: null,
    });
    expect(v1.body.envdAccessToken).toBeUndefined();
    const v2 = await call('POST', '/v2/sandboxes', {
      templateID: 'base',
      metadata: { a: 'b' },
      unknownField: 1,
    });
    expect(v2.body.envdAccessToken).toBe('token');
    await call('POST', '/sandboxes', { templateID: 'base', secure: true, timeout: 7, envVars: { A: '1' } });
    expect(created.map((c) => [c.timeoutMs, c.secure])).toEqual([
      [15_000, false],
      [300_000, true],
      [7_000, true],
    ]);
    expect(created[2]!.envVars).toEqual({ A: '1' });
  });

  it('refuses what it cannot honour and bad input, with {code, message}', async () => {
    const { call, created } = setup();
    const cases: Array<[unknown, RegExp]> = [
      [{ templateID: 'base', autoPauseMemory: false }, /needs autoPause/],
      [
        { templateID: 'base', autoPause: true, autoPauseMemory: false, autoResume: { enabled: true } },
        /autoResume/,
      ],
      [{ templateID: 'base', volumeMounts: [{ name: 'v', path: '/v' }] }, /volumes/],
      [{ templateID: 'base', network: { denyOut: ['example.com'] } }, /denyOut\[0\].*only be allowed/],
      [{ templateID: 'base', network: { denyOut: ['10.0.0.300'] } }, /not a valid IPv4/],
      [{ templateID: 'base', network: { allowOut: ['a..b'] } }, /allowOut\[0\]/],
      [{ templateID: 'base', network: { allowOut: ['example.com'] } }, /ALL_TRAFFIC/],
      [{ templateID: 'base', network: { httpsPorts: [70000] } }, /httpsPorts/],
      [
        { templateID: 'base', network: { egressProxy: { address: 'a' } } },
        /egressProxy: address "a" is not host:port/,
      ],
      [
        { templateID: 'base', network: { rules: { '*': [{}] } } },
        /network\.rules: "\*" is not a domain name/,
      ],
      [{ templateID: 'base', timeout: 1.5 }, /timeout/],
      [{ templateID: 'base', timeout: -1 }, /greater than 0/],
      [{ templateID: 'base', envVars: { 'BAD NAME': 'x' } }, /envVars/],
      [{ templateID: 'base', metadata: { k: 1 } }, /metadata/],
      ['{"templateID":', /not valid JSON/],
      ['null', /body/],
    ];
    for (const [body, message] of cases) {
      const res = await call('POST', '/v2/sandboxes', body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body).toEqual({ code: 400, message: expect.stringMatching(message) as unknown });
    }
    expect(created).toEqual([]);
    expect(
      (await call('POST', '/sandboxes', { templateID: 'base', network: { allowPublicTraffic: false } })).body
        .message,
    ).toMatch(/secure/);
    expect(created).toEqual([]);
    // What changes nothing is accepted: the defaults, allowOut alone, a kill at the timeout.
    for (const body of [
      {
        allow_internet_access: true,
        autoPause: false,
        network: { allowOut: ['1.1.1.1'], allowPublicTraffic: true },
      },
      {
        volumeMounts: [],
        autoResume: { enabled: false },
        iam: { tokens: {} },
        network: { egressProxy: null },
      },
      { mcp: { server: {} } },
    ])
      expect((await call('POST', '/v2/sandboxes', { templateID: 'base', ...body })).status).toBe(201);
  });

  it('bounds the body, chunked or not', async () => {
    const { app, call } = setup();
    const big = JSON.stringify({ templateID: 'base', metadata: { k: 'x'.repeat(2 << 20) } });
    expect((await call('POST', '/v2/sandboxes', big)).body.message).toMatch(/larger than 1 MiB/);
    const chunked = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 3; i++) c.enqueue(new Uint8Array(512 * 1024).fill(32));
        c.close();
      },
    });
    const res = await app.request('/v2/sandboxes', {
      method: 'POST',
      headers: { 'x-api-key': KEY },
      body: chunked,
      duplex: 'half',
    });
    expect(res.status).toBe(400);
  });
});

describe('sandbox routes', () => {
  it('connects without shortening, gets info, kills once, and 404s an unknown or malformed id', async () => {
    const { call } = setup();
    const { sandboxID: id } = (await call('POST', '/v2/sandboxes', { templateID: 'base', timeout: 600 }))
      .body;
    const before = (await call('GET', `/sandboxes/${id}`)).body;
    expect(before).toMatchObject({
      sandboxID: id,
      state: 'running',
      cpuCount: 2,
      memoryMB: 512,
      diskSizeMB: 1000,
    });
    expect(before.lifecycle).toEqual({ onTimeout: 'kill', autoResume: false });
    for (const path of [`/v2/sandboxes/${id}/connect`, `/sandboxes/${id}/connect`]) {
      const connected = await call('POST', path, { timeout: 10 });
      expect(connected.status).toBe(200);
      expect(connected.body.envdAccessToken).toBe('token');
    }
    expect((await call('GET', `/sandboxes/${id}`)).body.endAt).toBe(before.endAt);
    expect((await call('POST', `/v2/sandboxes/${id}/connect`, { timeout: 0 })).status).toBe(200);
    expect((await call('POST', `/v2/sandboxes/${id}/connect`, { timeout: -5 })).status).toBe(400);
    expect((await call('POST', `/sandboxes/${id}/timeout`, { timeout: 5 })).status).toBe(204);
    expect((await call('POST', `/sandboxes/${id}/timeout`, {})).status).toBe(400);
    expect((await call('POST', `/sandboxes/${id}/refreshes`, {})).status).toBe(204);
    expect((await call('POST', `/sandboxes/${id}/refreshes`, { duration: 3601 })).status).toBe(400);
    expect((await call('DELETE', `/sandboxes/${id}`)).status).toBe(204);
    for (const [method, path] of [
      ['DELETE', `/sandboxes/${id}`],
      ['GET', `/sandboxes/${id}`],
      ['POST', `/v2/sandboxes/${id}/connect`],
      ['POST', `/sandboxes/${id}/timeout`],
      ['GET', `/sandboxes/${id}/metrics`],
      ['DELETE', '/sandboxes/nonexistingsandbox'],
      ['GET', '/sandboxes/NOT-AN-ID'],
    ]) {
      const res = await call(method!, path!, method === 'POST' ? { timeout: 5 } : undefined);
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.code).toBe(404);
    }
  });

  it('lists with headers, pages and a bad token as 400', async () => {
    const { call } = setup();
    for (let i = 0; i < 3; i++)
      await call('POST', '/v2/sandboxes', { templateID: 'base', metadata: { n: String(i) } });
    const page = await call('GET', '/v2/sandboxes?limit=2');
    expect(page.body).toHaveLength(2);
    expect(page.headers.get('x-total-running')).toBe('3');
    const next = await call('GET', `/v2/sandboxes?limit=2&nextToken=${page.headers.get('x-next-token')}`);
    expect(next.body).toHaveLength(1);
    expect(next.headers.get('x-next-token')).toBeNull();
    expect((await call('GET', '/v2/sandboxes?nextToken=nope')).body).toEqual({
      code: 400,
      message: 'Invalid next token',
    });
    const filtered = await call('GET', `/v2/sandboxes?metadata=${encodeURIComponent('n=1')}`);
    expect(items(filtered.body).map((s) => s.metadata)).toEqual([{ n: '1' }]);
    expect((await call('GET', '/sandboxes?metadata=n%3D2')).body).toHaveLength(1);
  });

  it('pauses once (409 after), resumes with 201 through connect, forks, and 404s unknown ids', async () => {
    const { call } = setup();
    const { sandboxID: id } = (await call('POST', '/v2/sandboxes', { templateID: 'base' })).body;
    expect((await call('POST', '/sandboxes/aaaaaaaaaaaaaaaaaaaa/pause', {})).status).toBe(404);
    expect((await call('POST', `/sandboxes/${id}/resume`, {})).status).toBe(409);
    expect((await call('POST', `/sandboxes/${id}/pause`, {})).status).toBe(204);
    expect((await call('POST', `/sandboxes/${id}/pause`, {})).body).toMatchObject({ code: 409 });
    expect((await call('POST', `/v2/sandboxes/${id}/connect`, { timeout: 60 })).status).toBe(201);
    expect((await call('POST', `/v2/sandboxes/${id}/connect`, { timeout: 60 })).status).toBe(200);
    const forks = await call('POST', `/sandboxes/${id}/fork`, { count: 2 });
    expect(forks.status).toBe(201);
    expect(forks.body).toHaveLength(2);
    expect((await call('POST', `/sandboxes/${id}/fork`, { count: 0 })).status).toBe(400);
    // The body's bounds come first, as upstream's API validates them: 400 even for an unknown id.
    expect((await call('POST', '/sandboxes/sbx-test/fork', { count: 0 })).body).toMatchObject({ code: 400 });
    expect((await call('POST', '/sandboxes/sbx-test/fork', { count: 1 })).status).toBe(404);
    expect((await call('GET', '/snapshots')).body).toEqual([]);
  });

  it('answers what Cove does not serve with clear errors', async () => {
    const { call, updated } = setup();
    const { sandboxID: id } = (await call('POST', '/v2/sandboxes', { templateID: 'base' })).body;
    for (const [method, path] of [
      ['POST', '/v3/templates'],
      ['GET', '/templates/aliases/base'],
      ['DELETE', '/templates/abc'],
      ['POST', '/volumes'],
      ['GET', '/secrets'],
    ])
      expect((await call(method!, path!, method === 'POST' ? {} : undefined)).status).toBe(400);
    expect((await call('PUT', `/sandboxes/${id}/network`, { allowOut: [] })).status).toBe(204);
    expect((await call('PUT', `/sandboxes/${id}/network`, { denyOut: ['10.0.0.0/8'] })).status).toBe(204);
    expect(updated.at(-1)).toEqual({ allowOut: [], denyOut: ['10.0.0.0/8'], allowInternetAccess: true });
    expect((await call('PUT', `/sandboxes/${id}/network`, { allow_internet_access: false })).status).toBe(
      204,
    );
    expect(updated.at(-1)).toEqual({ allowOut: [], denyOut: ['0.0.0.0/0'], allowInternetAccess: false });
    const bad = await call('PUT', `/sandboxes/${id}/network`, { denyOut: ['1.2.3.4/33'] });
    expect([bad.status, updated.length]).toEqual([400, 3]);
  });

  it('serves the log in v1 and v2 shapes, with level, search and direction', async () => {
    const { call } = setup();
    const { sandboxID: id } = (await call('POST', '/v2/sandboxes', { templateID: 'base' })).body;
    await call('POST', `/sandboxes/${id}/timeout`, { timeout: 60 });
    const v1 = (await call('GET', `/sandboxes/${id}/logs`)).body;
    expect(v1.logs!.map((l) => l.line)).toEqual(['sandbox created', 'timeout set']);
    expect(v1.logEntries![0]).toMatchObject({ level: 'info', fields: { template: 'base', apiKey: 'key_1' } });
    const back = (await call('GET', `/v2/sandboxes/${id}/logs?direction=backward&limit=1`)).body;
    expect(back.logs!.map((l) => l.message)).toEqual(['timeout set']);
    expect((await call('GET', `/v2/sandboxes/${id}/logs?search=created`)).body.logs).toHaveLength(1);
    expect((await call('GET', `/v2/sandboxes/${id}/logs?level=warn`)).body.logs).toEqual([]);
    expect((await call('GET', `/v2/sandboxes/${id}/logs?level=loud`)).status).toBe(400);
    expect((await call('GET', `/v2/sandboxes/${id}/logs?limit=1001`)).status).toBe(400);
  });
});
