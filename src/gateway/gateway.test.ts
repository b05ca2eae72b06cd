import { EventEmitter } from 'node:events';
import {
  Agent,
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CoveError } from '../core/errors.ts';
import type { Envd } from '../envd/index.ts';
import type { Manager } from '../manager/manager.ts';
import { OPEN_NETWORK } from '../network/egress-policy.ts';
import { createGateway } from './gateway.ts';
import { signature as fileSignature } from '../envd/files/signing.ts';

const X = 'xxxxxxxxxxxxxxxxxxxx';
const Y = 'yyyyyyyyyyyyyyyyyyyy';

/** A gateway over a manager that knows sandboxes X and Y, and an envd that answers /health
 * at once and holds /hold open, so that a kill can be watched cutting it. */
async function start() {
  const events = new EventEmitter();
  const alive = new Set([X, Y]);
  const manager = {
    events,
    get: (id: string) => {
      if (!alive.has(id)) throw new CoveError('not_found', 'gone');
      return {
        id,
        envdAccessToken: `token-${id}`,
        address: '127.0.0.1',
        network: OPEN_NETWORK,
        state: 'running',
      };
    },
    wake: () => Promise.resolve(false),
    list: () => [...alive].map((id) => ({ id, envdAccessToken: `token-${id}` })),
  } as unknown as Manager;
  const envd: Envd = {
    handle(req: IncomingMessage, res: ServerResponse, id: string) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      if (req.url === '/hold') res.write(`holding ${id}\n`);
      else res.end(`envd of ${id}`);
    },
  };
  const api = (_req: IncomingMessage, res: ServerResponse) => res.end('api');
  const server = createServer(createGateway({ manager, envd, api }).request);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const kill = (id: string) => {
    alive.delete(id);
    events.emit('killed', id);
  };
  return { server, port: (server.address() as AddressInfo).port, kill };
}

type Reply = { status: number; body: string; res: IncomingMessage };

function get(port: number, path: string, headers: Record<string, string>, agent?: Agent): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request({ port, host: '127.0.0.1', path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      if (path === '/hold') return resolve({ status: res.statusCode!, body, res });
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, body, res }));
    });
    req.on('error', reject);
    req.end();
  });
}

const to = (id: string, port = '49983') => ({ 'e2b-sandbox-id': id, 'e2b-sandbox-port': port });

describe('gateway', () => {
  let server: Server | undefined;
  afterEach(() => {
    server?.closeAllConnections();
    server?.close();
  });

  it('answers upstream’s exact 502 bodies, 400 for half the headers, and the API without headers', async () => {
    const g = await start();
    server = g.server;
    expect(await get(g.port, '/v2/sandboxes', {})).toMatchObject({ status: 200, body: 'api' });
    expect(await get(g.port, '/health', to(X))).toMatchObject({ status: 200, body: `envd of ${X}` });
    const gone = await get(g.port, '/health', to('zzzzzzzzzzzzzzzzzzzz'));
    expect(gone.status).toBe(502);
    expect(gone.body).toBe(
      '{"sandboxId":"zzzzzzzzzzzzzzzzzzzz","message":"The sandbox was not found","code":502}',
    );
    expect(gone.res.headers['content-type']).toBe('application/json');
    // The manager places X at 127.0.0.1; port 1 (tcpmux) is closed on any ordinary host.
    const closed = await get(g.port, '/', to(X, '1'));
    expect(closed.body).toBe(
      `{"sandboxId":"${X}","message":"The sandbox is running but port is not open","port":1,"code":502}`,
    );
    const half = await get(g.port, '/health', { 'e2b-sandbox-id': X });
    expect(half.status).toBe(400);
    expect(JSON.parse(half.body)).toEqual({ message: 'Missing header: E2b-Sandbox-Port', code: 400 });
    g.kill(X); // killed, or timed out: the manager emits the same event
    expect((await get(g.port, '/health', to(X))).status).toBe(502);
  });

  it('routes a signed /files URL to the sandbox whose token signed it, else 401', async () => {
    const g = await start();
    server = g.server;
    const signature = fileSignature('a.txt', 'read', '', `token-${Y}`);
    const url = `/files?${new URLSearchParams({ path: 'a.txt', signature }).toString()}`;
    expect(await get(g.port, url, {})).toMatchObject({ status: 200, body: `envd of ${Y}` });
    const bad = await get(g.port, '/files?path=a.txt&signature=v1_nope', {});
    expect(bad.status).toBe(401);
    expect(JSON.parse(bad.body)).toEqual({ message: 'invalid signature', code: 401 });
  });

  it('cuts the requests in flight for a killed sandbox, not others on a connection it used before', async () => {
    const g = await start();
    server = g.server;
    /** Resolves with how a held response ended: 'end' (complete) or 'cut'. */
    const outcome = (r: Reply) =>
      new Promise<string>((resolve) => {
        r.res.on('error', () => resolve('cut'));
        r.res.on('close', () => resolve(r.res.complete ? 'end' : 'cut'));
      });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    await get(g.port, '/health', to(X), agent);
    const held = await get(g.port, '/hold', to(Y), agent); // the same socket, now serving Y
    const heldEnds = outcome(held);
    g.kill(X);
    await new Promise((r) => setTimeout(r, 50));
    expect(held.res.destroyed).toBe(false);

    const second = await get(g.port, '/hold', to(Y), new Agent());
    const secondEnds = outcome(second);
    g.kill(Y);
    expect(await heldEnds).toBe('cut');
    expect(await secondEnds).toBe('cut');
    agent.destroy();
  });
});
