import type { ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { badUpstream, portClosed, type GatewayBody } from './reply.ts';

/** One port of one sandbox, at the sandbox's own address on the bridge. */
export interface PortTarget {
  sandboxId: string;
  address: string;
  port: number;
  /** The Host header the server gets instead of the client's (maskRequestHost). */
  host?: string;
  /** The server speaks TLS (httpsPorts): reached over https, its certificate not verified. */
  tls?: boolean;
}

export interface Timeouts {
  /** No byte either way for this long ends a proxied exchange or WebSocket. */
  idleTimeoutMs: number;
  /** How long a connection to a sandbox may take to open (a server that drops SYNs). */
  connectTimeoutMs: number;
}

/** Errors while connecting: nothing listens there (refused), or nothing answers at all. */
const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN']);
const CONNECT_TIMEOUT = 'COVE_CONNECT_TIMEOUT';

/**
 * Arms a request to a sandbox with the connect timeout until its socket is open (a pooled
 * socket already is), then the idle timeout. Either one destroys the request with an error
 * that failure() can tell apart.
 */
export function withTimeouts(up: ClientRequest, t: Timeouts): void {
  up.setTimeout(t.connectTimeoutMs);
  up.once('socket', (socket: Socket) => {
    if (socket.connecting) socket.once('connect', () => up.setTimeout(t.idleTimeoutMs));
    else up.setTimeout(t.idleTimeoutMs);
  });
  up.on('timeout', () => {
    const connecting = up.socket?.connecting ?? true;
    const err = Object.assign(new Error(connecting ? 'connect timeout' : 'idle timeout'), {
      code: connecting ? CONNECT_TIMEOUT : 'ETIMEDOUT',
    });
    up.destroy(err);
  });
}

/** The 502 body for a request to a sandbox port that failed before any response head. */
export function failure(target: PortTarget, err: NodeJS.ErrnoException): GatewayBody {
  const code = err.code ?? '';
  if (CONNECT_ERRORS.has(code) || code === CONNECT_TIMEOUT) return portClosed(target.sandboxId, target.port);
  return badUpstream(target.sandboxId, target.port, code || err.message);
}
