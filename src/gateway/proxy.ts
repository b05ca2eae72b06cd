import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent as TlsAgent, request as tlsRequest } from 'node:https';
import type { Duplex } from 'node:stream';
import { endToEnd, hasBody, requestHeaders, trailerPairs, protoOf } from './headers.ts';
import { badUpstream, sendJson } from './reply.ts';
import { failure, withTimeouts, type PortTarget, type Timeouts } from './upstream.ts';
import { forwardUpgrade } from './websocket.ts';

export type { PortTarget } from './upstream.ts';

export interface ProxyOptions extends Partial<Timeouts> {
  /** How long an idle pooled connection to a sandbox is kept for the next request. */
  freeSocketTimeoutMs?: number;
}

/**
 * The port proxy: HTTP/1.1 to a server in a sandbox, bodies streamed both ways with
 * backpressure and nothing buffered, and any `Upgrade` (WebSockets) turned into a byte pipe.
 * Connections to each sandbox are pooled (keep-alive) in an agent of its own, so that
 * `drop(id)` closes exactly that sandbox's connections when it stops.
 *
 * Bounds on what comes out of a sandbox: Node's parser limits (16 KiB of response head, 2000
 * headers); an idle timeout on every exchange; a response that streams forever is the client's
 * to end. A connection that cannot be opened is upstream's "port is not open" 502.
 */
export interface PortProxy {
  request(req: IncomingMessage, res: ServerResponse, target: PortTarget): void;
  /** Takes over a socket whose request asked for an upgrade (the server's 'upgrade' event). */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, target: PortTarget): void;
  /** Destroys the sandbox's pooled connections, busy ones included. A later request makes a new pool. */
  drop(sandboxId: string): void;
  /** drop() for every sandbox. */
  close(): void;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 10 * 60_000;

export function createPortProxy(opts: ProxyOptions = {}): PortProxy {
  const timeouts: Timeouts = {
    idleTimeoutMs: opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
    // A sandbox is one hop away on the bridge: a connect either succeeds or is refused at
    // once, unless a firewall inside the sandbox drops the SYN.
    connectTimeoutMs: opts.connectTimeoutMs ?? 10_000,
  };
  const agents = new Map<string, Agent>();

  /** Keyed `<id>` for plain HTTP and `<id>/tls` for httpsPorts, so that drop() finds both. */
  function agentFor(sandboxId: string, tls = false): Agent {
    const key = tls ? `${sandboxId}/tls` : sandboxId;
    let agent = agents.get(key);
    if (!agent) {
      // httpsPorts: E2B's proxy does not verify the server's certificate (the SDK's doc says
      // self-signed ones work), and the sandbox is reached by address, so there is no name.
      const Kind = tls ? TlsAgent : Agent;
      agent = new Kind({
        ...(tls && { rejectUnauthorized: false }),
        keepAlive: true,
        // Enough for a busy dev server; more requests wait for a free socket, and their
        // number is bounded by the client connections the gateway holds.
        maxSockets: 512,
        maxFreeSockets: 64,
        // Agent-level timeout: idle pooled sockets close after it (requests set their own).
        timeout: opts.freeSocketTimeoutMs ?? 30_000,
        scheduling: 'lifo',
      });
      agents.set(key, agent);
    }
    return agent;
  }

  function forward(req: IncomingMessage, res: ServerResponse, target: PortTarget, retried: boolean): void {
    const body = hasBody(req);
    const up = (target.tls ? tlsRequest : request)({
      host: target.address,
      port: target.port,
      method: req.method,
      path: req.url,
      headers: requestHeaders(req, { proto: protoOf(req), host: target.host }),
      agent: agentFor(target.sandboxId, target.tls),
    });
    withTimeouts(up, timeouts);

    // The client went away first (or the gateway cut it on kill): stop the sandbox side too.
    const onClientClose = () => {
      if (!res.writableFinished) up.destroy();
    };
    res.once('close', onClientClose);

    up.on('response', (ures: IncomingMessage) => {
      try {
        res.writeHead(ures.statusCode ?? 502, ures.statusMessage, endToEnd(ures.rawHeaders));
      } catch (err) {
        // A head Node's parser took but its writer refuses (a status outside 100-999, say):
        // thrown here it would take the whole process down.
        sendJson(
          res,
          502,
          badUpstream(target.sandboxId, target.port, (err as NodeJS.ErrnoException).code ?? 'bad head'),
        );
        return void up.destroy();
      }
      // Each chunk is written as it arrives (a streamed response reaches the client before
      // it ends); pipe() pauses the sandbox's socket while the client is slow.
      ures.pipe(res, { end: false });
      ures.once('end', () => {
        if (ures.rawTrailers.length > 0) res.addTrailers(trailerPairs(endToEnd(ures.rawTrailers)));
        res.end();
      });
      ures.once('error', () => res.destroy());
    });

    up.on('error', (err: NodeJS.ErrnoException) => {
      res.off('close', onClientClose);
      if (res.headersSent) {
        // Mid-response: the client must see a cut, not a clean end of a partial body.
        if (!res.writableEnded) res.destroy();
        return;
      }
      if (res.destroyed) return;
      // A pooled connection that the server closed just as it was reused: the request never
      // reached the server, so one retry on a fresh connection is safe when there is no body
      // to replay (Node marks such sockets reusedSocket for this check).
      if (!retried && !body && up.reusedSocket && err.code === 'ECONNRESET')
        return forward(req, res, target, true);
      sendJson(res, 502, failure(target, err));
    });

    if (!body) {
      up.end();
      return;
    }
    // Each chunk goes on as it arrives, with backpressure, so an upload streams through.
    req.pipe(up, { end: false });
    req.once('end', () => {
      if (req.rawTrailers.length > 0) up.addTrailers(trailerPairs(endToEnd(req.rawTrailers)));
      up.end();
    });
  }

  function drop(sandboxId: string): void {
    for (const key of [sandboxId, `${sandboxId}/tls`]) {
      const agent = agents.get(key);
      // Reset, not closed: a FIN leaves the sandbox's end in LAST_ACK or TIME_WAIT for a while,
      // and a gVisor sandbox cannot be checkpointed (paused with memory) while one is there.
      for (const pool of [agent?.sockets, agent?.freeSockets])
        for (const sockets of Object.values(pool ?? {}))
          for (const socket of sockets ?? []) socket.resetAndDestroy();
      agent?.destroy();
      agents.delete(key);
    }
  }

  return {
    request: (req, res, target) => forward(req, res, target, false),
    upgrade: (req, socket, head, target) => forwardUpgrade(req, socket, head, target, timeouts),
    drop,
    close() {
      for (const agent of agents.values()) agent.destroy();
      agents.clear();
    },
  };
}
