import { createServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { Duplex } from 'node:stream';
import { requestIdFrom, runInRequest, type RequestContext } from '../core/request-context.ts';

/**
 * Cove's one port: HTTP, or the same listeners over TLS (HTTP/1.1; the SDK's undici falls back
 * from h2 by ALPN). Resolves once listening, with the port (known only now when 0 was asked).
 */
export async function listen(opts: {
  host: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  shouldUpgrade: (req: IncomingMessage) => boolean;
}): Promise<{ server: Server; port: number }> {
  const options = { keepAliveTimeout: 65_000, shouldUpgradeCallback: opts.shouldUpgrade };
  const server = opts.tls
    ? createHttpsServer({ ...options, cert: opts.tls.cert, key: opts.tls.key })
    : createServer(options);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address();
  return { server, port: typeof address === 'object' && address ? address.port : opts.port };
}

/**
 * Every request and upgrade runs in its own context (core/request-context.ts): its log lines
 * and audit records name it, and the API's key check adds its key. `admit` says who may call
 * at all (a `cove node` admits API replicas only); undefined refuses.
 */
export function serve(
  server: Server,
  gateway: {
    request(req: IncomingMessage, res: import('node:http').ServerResponse): void;
    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void;
  },
  admit: (req: IncomingMessage) => Partial<RequestContext> | undefined,
): void {
  const context = (req: IncomingMessage, who: Partial<RequestContext>) => ({
    requestId: requestIdFrom(req.headers['x-request-id']),
    ...who,
  });
  server.on('request', (req, res) => {
    const who = admit(req);
    if (!who)
      return void res
        .writeHead(401, { 'content-type': 'application/json' })
        .end('{"message":"not an API replica"}');
    runInRequest(context(req, who), () => gateway.request(req, res));
  });
  server.on('upgrade', (req, socket, head) => {
    const who = admit(req);
    if (!who) return void socket.destroy();
    runInRequest(context(req, who), () => gateway.upgrade(req, socket, head));
  });
}
