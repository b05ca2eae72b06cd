import { spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CoveError } from '../core/errors.ts';
import type { Envd } from '../envd/index.ts';
import type { Manager } from '../manager/manager.ts';
import { OPEN_NETWORK } from '../network/egress-policy.ts';
import { createGateway, type Gateway } from './gateway.ts';
import type { ProxyOptions } from './proxy.ts';

const X = 'xxxxxxxxxxxxxxxxxxxx';

/** The fixture server (testdata/port-server.js) on the loopback: "sandbox X" listens there. */
let fixture: ChildProcess;
let upstreamPort: number;

beforeAll(async () => {
  fixture = spawn(process.execPath, [
    join(import.meta.dirname, 'testdata', 'port-server.js'),
    '0',
    '127.0.0.1',
  ]);
  upstreamPort = await new Promise<number>((resolve, reject) => {
    fixture.stdout!.on('data', (d: Buffer) => {
      const m = /listening on (\d+)/.exec(d.toString());
      if (m) resolve(Number(m[1]));
    });
    fixture.once('exit', (code) => reject(new Error(`fixture exited ${code}`)));
  });
});
afterAll(() => void fixture.kill());

/** A port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** A gateway whose one sandbox X lives at 127.0.0.1, as a real one lives at its bridge address. */
async function start(proxy: ProxyOptions = {}) {
  const events = new EventEmitter();
  const alive = new Set([X]);
  const manager = {
    events,
    get: (id: string) => {
      if (!alive.has(id)) throw new CoveError('not_found', 'gone');
      return { id, address: '127.0.0.1', network: OPEN_NETWORK, state: 'running' };
    },
    wake: () => Promise.resolve(false),
    list: () => [],
  } as unknown as Manager;
  const envd = { handle: (_req, res) => res.end('envd') } as Envd;
  const gateway: Gateway = createGateway({ manager, envd, api: (_req, res) => res.end('api'), proxy });
  const server = createServer({ shouldUpgradeCallback: gateway.shouldUpgrade }, gateway.request);
  server.on('upgrade', gateway.upgrade);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kill = (id: string) => {
    alive.delete(id);
    events.emit('killed', id);
  };
  const revive = (id: string) => alive.add(id);
  return { server, gateway, port: (server.address() as AddressInfo).port, kill, revive };
}

const to = (port: number, id = X) => ({ 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': String(port) });

/** A raw request through the gateway; resolves at the response head, the body left to read. */
function send(
  port: number,
  opts: { method?: string; path: string; headers: Record<string, string> | string[]; body?: string },
): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      method: opts.method ?? 'GET',
      path: opts.path,
      headers: opts.headers,
    });
    req.on('response', resolve).on('error', reject);
    req.end(opts.body);
  });
}

async function text(res: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of res) body += String(chunk);
  return body;
}

/** The next chunk of a response, as text; the stream is paused after it, so nothing is lost. */
const nextChunk = (res: IncomingMessage) =>
  new Promise<string>((resolve) =>
    res.once('data', (d: Buffer) => {
      res.pause();
      resolve(d.toString());
    }),
  );

describe('port proxy', () => {
  let server: Server | undefined;
  let gateway: Gateway | undefined;
  afterEach(() => {
    gateway?.close();
    server?.closeAllConnections();
    server?.close();
  });
  async function gatewayWith(proxy: ProxyOptions = {}) {
    const g = await start(proxy);
    ({ server, gateway } = g);
    return g;
  }

  it('forwards end-to-end headers as sent, keeps Host, adds X-Forwarded-*, drops hop-by-hop ones', async () => {
    const g = await gatewayWith();
    const res = await send(g.port, {
      path: '/headers',
      headers: [
        ...Object.entries(to(upstreamPort)),
        ['Host', `${upstreamPort}-${X}.localhost:3000`],
        ['X-Dup', 'one'],
        ['X-Dup', 'two'],
        ['Connection', 'keep-alive, X-Hop'],
        ['X-Hop', 'per connection'],
        ['Keep-Alive', 'timeout=5'],
        ['Proxy-Authorization', 'Basic eDp5'],
        ['X-Forwarded-For', '203.0.113.7'],
        ['X-Forwarded-Proto', 'https'],
      ].flat(),
    });
    expect(res.statusCode).toBe(200);
    const seen = JSON.parse(await text(res)) as { rawHeaders: string[] };
    const pairs = [];
    for (let i = 0; i < seen.rawHeaders.length; i += 2)
      pairs.push([seen.rawHeaders[i], seen.rawHeaders[i + 1]]);
    expect(pairs).toEqual(
      expect.arrayContaining([
        ['Host', `${upstreamPort}-${X}.localhost:3000`],
        ['X-Dup', 'one'],
        ['X-Dup', 'two'],
        ['X-Forwarded-For', '203.0.113.7, 127.0.0.1'],
        ['X-Forwarded-Proto', 'http'],
        ['X-Forwarded-Host', `${upstreamPort}-${X}.localhost:3000`],
      ]),
    );
    const names = pairs.map(([n]) => n!.toLowerCase());
    for (const hop of ['x-hop', 'keep-alive', 'proxy-authorization']) expect(names).not.toContain(hop);
    expect(names.filter((n) => n === 'host')).toHaveLength(1);
  });

  it('pools connections per sandbox, and drops the pool when the sandbox is killed', async () => {
    const g = await gatewayWith();
    const clientPort = async () => {
      const res = await send(g.port, { path: '/headers', headers: to(upstreamPort) });
      return (JSON.parse(await text(res)) as { remotePort: number }).remotePort;
    };
    const first = await clientPort();
    expect(await clientPort()).toBe(first);
    g.kill(X);
    g.revive(X); // the same id and address again: only a new pool would connect anew
    expect(await clientPort()).not.toBe(first);
  });

  it('relays status text and repeated response headers', async () => {
    const g = await gatewayWith();
    const res = await send(g.port, { path: '/cookies', headers: to(upstreamPort) });
    expect([res.statusCode, res.statusMessage]).toEqual([201, 'Made Here']);
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(await text(res)).toBe('cookies');
  });

  it('streams: a response chunk arrives before the response ends, a request chunk is echoed before the request ends', async () => {
    const g = await gatewayWith();
    const res = await send(g.port, { path: '/stream', headers: to(upstreamPort) });
    expect(await nextChunk(res)).toBe('first\n');
    await text(await send(g.port, { path: '/release', headers: to(upstreamPort) }));
    expect(await text(res)).toBe('last\n');

    const echo = await new Promise<{ req: ReturnType<typeof request>; res: IncomingMessage }>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: g.port,
        method: 'POST',
        path: '/echo',
        headers: to(upstreamPort),
      });
      req.write('ping');
      req.on('response', (res) => resolve({ req, res }));
    });
    expect(await nextChunk(echo.res)).toBe('ping');
    echo.req.end('pong');
    expect(await text(echo.res)).toBe('pong');
  });

  it('answers upstream’s exact 502 for a closed port and for an unknown sandbox', async () => {
    const g = await gatewayWith();
    const closed = await closedPort();
    const res = await send(g.port, { path: '/', headers: to(closed) });
    expect(res.statusCode).toBe(502);
    expect(await text(res)).toBe(
      `{"sandboxId":"${X}","message":"The sandbox is running but port is not open","port":${closed},"code":502}`,
    );
    const gone = await send(g.port, { path: '/', headers: to(upstreamPort, 'zzzz') });
    expect(await text(gone)).toBe('{"sandboxId":"zzzz","message":"The sandbox was not found","code":502}');
  });

  it('passes a WebSocket through, and answers a WebSocket to a closed port with the 502', async () => {
    const g = await gatewayWith();
    const ws = new WebSocket(`ws://127.0.0.1:${g.port}/ws`, { headers: to(upstreamPort) });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const echoed = new Promise<string>((resolve) => (ws.onmessage = (e) => resolve(String(e.data))));
    ws.send('hello through the gateway');
    expect(await echoed).toBe('hello through the gateway');
    ws.close();

    const closed = await closedPort();
    const res = await new Promise<IncomingMessage>((resolve) => {
      const req = request({
        host: '127.0.0.1',
        port: g.port,
        headers: { ...to(closed), Connection: 'Upgrade', Upgrade: 'websocket' },
      });
      req.on('response', resolve);
      req.end();
    });
    expect(res.statusCode).toBe(502);
    expect(JSON.parse(await text(res))).toMatchObject({ port: closed, code: 502 });
  });

  it('serves an upgrade request to the API as a plain request (h2c from curl --http2)', async () => {
    const g = await gatewayWith();
    const res = await send(g.port, {
      path: '/health',
      headers: { Connection: 'Upgrade, HTTP2-Settings', Upgrade: 'h2c' },
    });
    expect(await text(res)).toBe('api');
  });

  it('cuts proxied responses and WebSockets when the sandbox is killed, then answers 502', async () => {
    const g = await gatewayWith();
    const res = await send(g.port, { path: '/stream', headers: to(upstreamPort) });
    await nextChunk(res);
    const cut = new Promise<string>((resolve) => {
      res.on('error', () => resolve('cut'));
      res.on('end', () => resolve('ended'));
    });
    const ws = new WebSocket(`ws://127.0.0.1:${g.port}/`, { headers: to(upstreamPort) });
    await new Promise((resolve) => (ws.onopen = resolve));
    const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));

    g.kill(X);
    expect(await cut).toBe('cut');
    expect(await closed).toBe(1006); // abnormal: no close frame, the connection was dropped
    const after = await send(g.port, { path: '/headers', headers: to(upstreamPort) });
    expect(after.statusCode).toBe(502);
    await text(after);
  });

  it('ends an exchange that stays idle past the idle timeout', async () => {
    const g = await gatewayWith({ idleTimeoutMs: 200 });
    const res = await send(g.port, { path: '/stream', headers: to(upstreamPort) });
    await nextChunk(res);
    const started = Date.now();
    await new Promise((resolve) => res.on('error', resolve).on('close', resolve));
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    expect(res.complete).toBe(false);
  });
});
