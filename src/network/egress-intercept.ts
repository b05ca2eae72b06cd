import {
  createServer,
  request as httpRequest,
  Agent as HttpAgent,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { Socket } from 'node:net';
import { PassThrough, type Duplex } from 'node:stream';
import { connect as tlsConnect, createSecureContext, rootCertificates, TLSSocket } from 'node:tls';
import { CoveError } from '../core/errors.ts';
import type { EgressCa } from './egress-ca.ts';
import { forwardUpgrade, refuseUpgrade } from './egress-upgrade.ts';
import { placeholders, type Placeholder, type TransformRule } from './transform-rules.ts';

/**
 * The egress proxy's HTTP side, for connections to a domain that has header rules
 * (transform-rules.ts): it terminates the sandbox's TLS with a certificate minted for the
 * server name by the instance's CA (egress-ca.ts, which every sandbox trusts), reads each
 * request with Node's HTTP parser, applies the rules' headers (placeholders resolved now,
 * per request, so that no value ever enters the sandbox) and sends the request on over a new
 * TLS connection to the address the proxy resolved for the name, verifying the server's
 * certificate for that name against Node's roots (plus COVE_EGRESS_TRUST_CA). Plain HTTP on
 * port 80 is handled the same way without the TLS ends. The sandbox receives the upstream's
 * answer unchanged; a failure to resolve a placeholder answers 502 and sends nothing on.
 */
export interface InterceptOptions {
  ca: EgressCa;
  /** More CA certificates (PEM) trusted for upstream servers, beside Node's roots. */
  trust?: string[];
  /**
   * What a placeholder stands for, for the sandbox at this address: a secret's value or a
   * freshly minted identity token; throws (rejects) CoveError when there is none.
   */
  resolve(sandboxAddress: string, placeholder: Placeholder): Promise<string> | string;
  /** One record per request whose headers were set: names only, never a value. */
  record(sandboxAddress: string, event: InterceptEvent): void;
}

export interface InterceptEvent {
  /** The rules' domain (as written) and the request's host. */
  domain: string;
  host: string;
  method: string;
  headers: string[];
  secrets: string[];
  /** Identity tokens minted into it (names). */
  tokens: string[];
  /** 'ok' or the CoveError code that kept the request from being sent. */
  outcome: string;
}

export interface Interception {
  /** Name (SNI or Host), the address to send to, the port the sandbox dialled, its rules. */
  handle(
    client: Socket,
    head: Buffer,
    target: {
      name: string;
      address: string;
      port: 80 | 443;
      source: string;
      rules: TransformRule[];
      domain: string;
      /** Through the sandbox's upstream proxy: a connection to the name's port (egress-upstream.ts). */
      upstream?: () => Promise<Socket>;
    },
  ): Promise<void>;
  close(): void;
}

/** Connection-level headers (RFC 9110 §7.6.1): they concern one hop, not the request. */
const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

type Target = Parameters<Interception['handle']>[2];

export function createInterception(opts: InterceptOptions): Interception {
  const targets = new WeakMap<Socket, Target>();
  const ca = opts.trust?.length ? [...rootCertificates, ...opts.trust] : undefined;
  // Kept-alive upstream connections: a sandbox's next request to the same server skips the
  // TCP and TLS handshakes (the agents key connections by address, port and server name).
  const https = new HttpsAgent({ keepAlive: true, maxFreeSockets: 64, ...(ca && { ca }) });
  const http = new HttpAgent({ keepAlive: true, maxFreeSockets: 64 });
  const server = createServer({ requestTimeout: 300_000 }, (req, res) => {
    const target = targets.get(req.socket);
    if (!target) return void res.destroy();
    void forward(req, res, target);
  });
  // WebSockets (and any other upgrade): the request rewritten as any other, then both ways
  // spliced byte for byte once the server agrees (egress-upgrade.ts).
  server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const target = targets.get(req.socket);
    if (!target) return void socket.destroy();
    prepare(req, target).then(
      (prepared) => {
        if ('status' in prepared) return refuseUpgrade(socket, prepared.status, prepared.message);
        const headers = { ...prepared.headers, connection: 'Upgrade', upgrade: req.headers.upgrade ?? '' };
        forwardUpgrade(socket, head, upstreamRequest(req, target, headers, { pooled: false }), target.name);
      },
      () => socket.destroy(),
    );
  });
  server.on('clientError', (_err, socket: Socket) => socket.destroy());

  /**
   * The request's headers for upstream: hop-by-hop ones dropped, the rules' set with their
   * placeholders resolved now, the injection recorded; or the status and message that answer
   * the sandbox instead (nothing is sent on).
   */
  async function prepare(
    req: IncomingMessage,
    target: Target,
  ): Promise<{ headers: Record<string, string | string[]> } | { status: number; message: string }> {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase().replace(/\.$/, '');
    if (host !== target.name)
      return { status: 421, message: `this connection is for ${target.name}, not ${host || 'no host'}` };
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (v !== undefined && !HOP.has(k) && !k.startsWith('proxy-')) headers[k] = v;
    const set: string[] = [];
    const used = { secret: new Set<string>(), identity: new Set<string>() };
    const event = (outcome: string): InterceptEvent => ({
      domain: target.domain,
      host,
      method: req.method ?? '',
      headers: set,
      secrets: [...used.secret],
      tokens: [...used.identity],
      outcome,
    });
    // The body waits, unread, while placeholders resolve (minting a token is asynchronous).
    req.pause();
    try {
      for (const rule of target.rules)
        for (const [name, template] of Object.entries(rule.transform?.headers ?? {})) {
          let value = '';
          let at = 0;
          for (const p of placeholders(template)) {
            used[p.kind].add(p.name);
            value += template.slice(at, p.start) + (await opts.resolve(target.source, p));
            at = p.end;
          }
          headers[name.toLowerCase()] = value + template.slice(at);
          if (!set.includes(name)) set.push(name);
        }
    } catch (err) {
      const code = err instanceof CoveError ? err.code : 'internal';
      opts.record(target.source, event(code));
      const why = err instanceof CoveError ? err.message : 'resolving a placeholder failed';
      return { status: 502, message: `the request was not sent: ${why}` };
    }
    opts.record(target.source, event('ok'));
    return { headers };
  }

  /**
   * The request to the real server, over a kept-alive connection (`pooled`) or a fresh one of
   * its own (an upgrade takes its connection away for good).
   */
  function upstreamRequest(
    req: IncomingMessage,
    target: Target,
    headers: Record<string, string | string[]>,
    { pooled }: { pooled: boolean },
  ) {
    const tls = target.port === 443;
    return (tls ? httpsRequest : httpRequest)({
      host: target.address,
      port: target.port,
      method: req.method,
      path: req.url,
      headers,
      ...(tls && { servername: target.name }),
      ...(tls && !pooled && ca && { ca }), // the pooled agent has it
      ...(target.upstream
        ? { createConnection: viaUpstream(target.upstream, tls && target.name, ca) } // no agent: it wins
        : { agent: pooled ? (tls ? https : http) : false }),
    });
  }

  async function forward(req: IncomingMessage, res: ServerResponse, target: Target): Promise<void> {
    const prepared = await prepare(req, target);
    if ('status' in prepared) return fail(res, prepared.status, prepared.message);
    if (res.destroyed) return; // the sandbox gave up meanwhile
    const upstream = upstreamRequest(req, target, prepared.headers, { pooled: true });
    upstream.on('response', (answer) => {
      const out: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(answer.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
      res.writeHead(answer.statusCode ?? 502, answer.statusMessage, out);
      answer.pipe(res);
      answer.on('error', () => res.destroy());
    });
    upstream.on('error', (err) => {
      if (res.headersSent) return void res.destroy();
      fail(res, 502, `${target.name}: ${err.message}`);
    });
    req.pipe(upstream);
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
  }

  return {
    async handle(client, head, target) {
      // Answers go out as head and body writes: Nagle would hold the body for the client's ACK.
      client.setNoDelay(true);
      client.unshift(head);
      let stream: Socket = client;
      if (target.port === 443) {
        const leaf = await opts.ca.leaf(target.name);
        stream = new TLSSocket(client, {
          isServer: true,
          secureContext: createSecureContext(leaf),
          // HTTP/1.1 only: the parser here speaks no HTTP/2, and clients fall back by ALPN.
          ALPNProtocols: ['http/1.1'],
        });
        stream.on('error', () => client.destroy());
        client.once('close', () => stream.destroy());
      }
      targets.set(stream, target);
      server.emit('connection', stream);
      // Plain HTTP: the server reads the socket, paused since the Host was read. TLS must not
      // be resumed: the TLS socket reads the same handle, and a flowing socket would eat its bytes.
      if (stream === client) client.resume();
    },
    close() {
      https.destroy();
      http.destroy();
      server.closeAllConnections();
    },
  };
}

/**
 * `createConnection` for a request through an upstream proxy: the tunnel, wrapped in TLS for
 * `servername` (verified as without it) when that is set. No keep-alive: one tunnel a request.
 */
function viaUpstream(open: () => Promise<Socket>, servername: string | false, ca: string[] | undefined) {
  return (_opts: unknown, done: (err: Error | null, socket: Duplex) => void) => {
    const failed = (err: Error) => done(err, new PassThrough());
    open().then((socket) => {
      if (!servername) return done(null, socket);
      const secure = tlsConnect({ socket, servername, host: servername, ...(ca && { ca }) });
      secure.once('secureConnect', () => done(null, secure));
      secure.once('error', failed);
    }, failed);
    return undefined;
  };
}

function fail(res: ServerResponse, status: number, message: string): void {
  const body = `cove egress proxy: ${message}\n`;
  res.writeHead(status, {
    'content-type': 'text/plain; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
