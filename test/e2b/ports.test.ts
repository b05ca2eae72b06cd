import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { readFileSync } from 'node:fs';
import { get, request, type IncomingMessage } from 'node:http';
import type { LookupFunction, Socket } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

const SERVER = readFileSync(join(import.meta.dirname, '../../src/gateway/testdata/port-server.js'), 'utf8');

/**
 * `*.localhost` is the loopback (RFC 6761): curl and browsers resolve it so, but Node's
 * lookup asks the system resolver, which on hosts without nss-myhostname (this one) answers
 * ENOTFOUND — so Node clients pass this lookup, or use the E2b-Sandbox-* headers instead.
 */
const loopback: LookupFunction = (hostname, options, callback) => {
  if (hostname !== 'localhost' && !hostname.endsWith('.localhost'))
    return dnsLookup(hostname, options, callback);
  if (options.all) return callback(null, [{ address: '127.0.0.1', family: 4 }] satisfies LookupAddress[]);
  callback(null, '127.0.0.1', 4);
};

function getUrl(url: string, headers: Record<string, string> = {}): Promise<IncomingMessage> {
  return new Promise((resolve, reject) =>
    get(url, { lookup: loopback, headers }, resolve).on('error', reject),
  );
}

async function text(res: IncomingMessage): Promise<string> {
  let body = '';
  for await (const chunk of res) body += String(chunk);
  return body;
}

const curl = async (url: string) =>
  (await promisify(execFile)('curl', ['-sS', '-w', '\n%{http_code}', url])).stdout.split('\n');

/**
 * Servers inside sandboxes through the gateway (spec 1.2, 1.5; issue 4): reached at
 * `sbx.getHost(port)` and with the E2b-Sandbox-Id/-Port headers, streaming both ways,
 * WebSockets, upstream's 502 bodies for a closed port and a killed sandbox, 400 for bad ports.
 * The server is src/gateway/testdata/port-server.js, run by the template's Node 18.
 */
describe.skipIf(!canRunSandboxes)('servers in sandboxes, through the gateway', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let sbx: InstanceType<E2b['Sandbox']>;
  /** Through the gateway by headers, as a Node client without *.localhost would. */
  const viaHeaders = (port: number, path: string, init: RequestInit = {}) =>
    fetch(new URL(path, cove.url), {
      ...init,
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port) },
    });

  async function waitForPort(port: number): Promise<void> {
    for (let i = 0; i < 100; i++) {
      const res = await viaHeaders(port, '/');
      await res.arrayBuffer();
      if (res.status !== 502) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`nothing listens on ${port} in the sandbox`);
  }

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base');
    await sbx.files.write('/home/user/port-server.mjs', SERVER);
    await sbx.commands.run('node /home/user/port-server.mjs 8080', { background: true });
    await waitForPort(8080);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('getHost(8080) is <port>-<id>.localhost:<port>, which curl and a loopback lookup reach', async () => {
    const host = sbx.getHost(8080);
    expect(host).toBe(`8080-${sbx.sandboxId}.${cove.domain}`);
    expect(cove.domain).toBe(`localhost:${new URL(cove.url).port}`);

    const [body, status] = await curl(`http://${host}/headers`);
    expect(status).toBe('200');
    const seen = JSON.parse(body!) as { rawHeaders: string[] };
    expect(seen.rawHeaders).toEqual(expect.arrayContaining(['Host', host, 'X-Forwarded-Proto', 'http']));

    const res = await getUrl(`http://${host}/cookies`);
    expect([res.statusCode, res.headers['set-cookie']]).toEqual([201, ['a=1', 'b=2']]);
    expect(await text(res)).toBe('cookies');
  });

  it('reaches the same server with E2b-Sandbox-Id/-Port headers (Node fetch, no *.localhost)', async () => {
    const res = await viaHeaders(8080, '/headers');
    expect(res.status).toBe(200);
    const seen = (await res.json()) as { method: string; rawHeaders: string[] };
    expect(seen.method).toBe('GET');
    expect(seen.rawHeaders).toEqual(expect.arrayContaining(['E2b-Sandbox-Port', '8080']));
  });

  it('serves python3 -m http.server (HTTP/1.0, one connection per request)', async () => {
    await sbx.files.write('/home/user/www/index.html', 'hello from python');
    await sbx.commands.run('cd /home/user/www && python3 -m http.server 8000', { background: true });
    await waitForPort(8000);
    for (let i = 0; i < 3; i++)
      expect(await (await viaHeaders(8000, '/index.html')).text()).toBe('hello from python');
    const [body, status] = await curl(`http://${sbx.getHost(8000)}/index.html`);
    expect([body, status]).toEqual(['hello from python', '200']);
  });

  it('streams: the first chunk arrives before the response ends, an upload is echoed as it goes', async () => {
    const res = await viaHeaders(8080, '/stream');
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    expect((await reader.read()).value).toBe('first\n');
    expect(await (await viaHeaders(8080, '/release')).text()).toBe('released');
    expect((await reader.read()).value).toBe('last\n');
    expect((await reader.read()).done).toBe(true);

    const echoed = await new Promise<string>((resolve, reject) => {
      const req = request(`http://${sbx.getHost(8080)}/echo`, { method: 'POST', lookup: loopback }, (r) => {
        r.once('data', (d: Buffer) => {
          expect(d.toString()).toBe('ping'); // before the request has ended
          req.end('pong');
          void text(r).then((rest) => resolve(`ping${rest}`), reject);
        });
      });
      req.on('error', reject);
      req.write('ping');
    });
    expect(echoed).toBe('pingpong');
  });

  it('passes a WebSocket through, by headers (Node’s WebSocket) and by host (a raw handshake)', async () => {
    const ws = new WebSocket(cove.url.replace('http', 'ws'), {
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8080' },
    });
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const messages: string[] = [];
    const two = new Promise<void>((resolve) => {
      ws.onmessage = (e) => {
        messages.push(String(e.data));
        if (messages.length === 2) resolve();
      };
    });
    ws.send('hello');
    ws.send('x'.repeat(70_000)); // a 64-bit length frame
    await two;
    expect(messages.map((m) => m.length)).toEqual([5, 70_000]);
    ws.close();

    const key = randomBytes(16).toString('base64');
    const { res, socket } = await new Promise<{ res: IncomingMessage; socket: Socket }>((resolve, reject) => {
      const req = request(`http://${sbx.getHost(8080)}/`, {
        lookup: loopback,
        headers: {
          Connection: 'Upgrade',
          Upgrade: 'websocket',
          'Sec-WebSocket-Key': key,
          'Sec-WebSocket-Version': '13',
        },
      });
      req.on('upgrade', (r, s) => resolve({ res: r, socket: s }));
      req.on('error', reject);
      req.end();
    });
    expect(res.statusCode).toBe(101);
    expect(res.headers['sec-websocket-accept']).toBe(
      createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64'),
    );
    // One masked text frame "hi" (RFC 6455 §5.2), echoed unmasked.
    const mask = randomBytes(4);
    const payload = Buffer.from('hi').map((b, i) => b ^ mask[i % 4]!);
    socket.write(Buffer.concat([Buffer.from([0x81, 0x82]), mask, payload]));
    const frame = await new Promise<Buffer>((resolve) => socket.once('data', resolve));
    expect([...frame]).toEqual([0x81, 2, ...Buffer.from('hi')]);
    socket.destroy();
  });

  it('answers upstream’s exact 502 for a closed port, by headers and by host', async () => {
    const body = `{"sandboxId":"${sbx.sandboxId}","message":"The sandbox is running but port is not open","port":8081,"code":502}`;
    const res = await viaHeaders(8081, '/');
    expect([res.status, await res.text()]).toEqual([502, body]);
    expect(await curl(`http://${sbx.getHost(8081)}/`)).toEqual([body, '502']);
  });

  it('answers 400 with a clear message for ports 0 and 70000', async () => {
    const [body, status] = await curl(`http://0-${sbx.sandboxId}.${cove.domain}/`);
    expect(status).toBe('400');
    expect(JSON.parse(body!)).toEqual({
      message: `Invalid sandbox port "0" in host 0-${sbx.sandboxId}.localhost: a port is a number from 1 to 65535`,
      code: 400,
    });
    const res = await viaHeaders(70000, '/');
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toBe(
      'Invalid sandbox port "70000" in header E2b-Sandbox-Port: a port is a number from 1 to 65535',
    );
  });

  it('cuts a streaming response and a WebSocket when the sandbox is killed, then answers its 502', async () => {
    const other = await e2b.Sandbox.create('base');
    await other.files.write('/home/user/port-server.mjs', SERVER);
    await other.commands.run('node /home/user/port-server.mjs 8080', { background: true });
    const headers = { 'E2b-Sandbox-Id': other.sandboxId, 'E2b-Sandbox-Port': '8080' };
    let res: Response | undefined;
    for (let i = 0; i < 100 && res?.status !== 200; i++) {
      if (res) await new Promise((r) => setTimeout(r, 100));
      res = await fetch(new URL('/stream', cove.url), { headers });
    }
    const reader = res!.body!.getReader();
    await reader.read();
    const ws = new WebSocket(cove.url.replace('http', 'ws'), { headers });
    await new Promise((resolve) => (ws.onopen = resolve));
    const closed = new Promise<number>((resolve) => (ws.onclose = (e) => resolve(e.code)));

    await other.kill();
    await expect(reader.read()).rejects.toThrow();
    expect(await closed).toBe(1006);
    const after = await fetch(new URL('/headers', cove.url), { headers });
    expect([after.status, await after.text()]).toEqual([
      502,
      `{"sandboxId":"${other.sandboxId}","message":"The sandbox was not found","code":502}`,
    ]);
  });
});
