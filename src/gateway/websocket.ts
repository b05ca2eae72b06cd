import { request, STATUS_CODES, type IncomingMessage } from 'node:http';
import { request as tlsRequest } from 'node:https';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { endToEnd, requestHeaders, protoOf } from './headers.ts';
import { writeJson } from './reply.ts';
import { failure, withTimeouts, type PortTarget, type Timeouts } from './upstream.ts';

/** A response head written by hand on a raw socket. */
function head(status: number, message: string | undefined, raw: readonly string[]): string {
  let text = `HTTP/1.1 ${status} ${message ?? STATUS_CODES[status] ?? ''}\r\n`;
  for (let i = 0; i + 1 < raw.length; i += 2) text += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return `${text}\r\n`;
}

/**
 * Forwards a request that asked to switch protocols (a WebSocket handshake, in practice) and,
 * when the server in the sandbox answers 101, splices the two sockets: from then on bytes
 * flow both ways untouched, so any subprotocol, extension or frame size passes. Another answer
 * (404, 426, …) is relayed as an ordinary response that ends the connection.
 *
 * Ending: either side closing or failing destroys both; so does the idle timeout (no byte
 * either way). The gateway destroys `socket` when the sandbox stops, which ends the pair.
 */
export function forwardUpgrade(
  req: IncomingMessage,
  socket: Duplex,
  clientHead: Buffer,
  target: PortTarget,
  timeouts: Timeouts,
): void {
  let upstream: Socket | undefined;
  let answered = false;
  const up = (target.tls ? tlsRequest : request)({
    host: target.address,
    port: target.port,
    method: req.method,
    path: req.url,
    headers: requestHeaders(req, { proto: protoOf(req), upgrade: true, host: target.host }),
    // An upgraded connection leaves any pool: a fresh one, closed with the pair.
    agent: false,
    // httpsPorts: certificates are not verified (see proxy.ts)
    ...(target.tls && { rejectUnauthorized: false }),
  });
  withTimeouts(up, timeouts);

  socket.on('error', () => socket.destroy());
  socket.once('close', () => {
    up.destroy();
    upstream?.destroy();
  });

  up.on('upgrade', (ures: IncomingMessage, upSocket: Socket, upHead: Buffer) => {
    answered = true;
    upstream = upSocket;
    if (socket.destroyed) return upSocket.destroy();
    upSocket.on('error', () => upSocket.destroy());
    upSocket.once('close', () => socket.destroy());
    upSocket.setNoDelay(true);
    upSocket.setTimeout(timeouts.idleTimeoutMs, () => upSocket.destroy());
    // Bytes that came with either head belong to the new protocol already.
    socket.write(head(101, ures.statusMessage, ures.rawHeaders));
    if (upHead.length > 0) socket.write(upHead);
    if (clientHead.length > 0) upSocket.write(clientHead);
    upSocket.pipe(socket);
    socket.pipe(upSocket);
  });

  up.on('response', (ures: IncomingMessage) => {
    answered = true;
    // The server declined to switch: relay its answer, delimited by closing the connection
    // (the body arrives decoded, so its framing headers no longer apply).
    const raw = endToEnd(ures.rawHeaders);
    const kept: string[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2)
      if (raw[i]!.toLowerCase() !== 'content-length') kept.push(raw[i]!, raw[i + 1]!);
    socket.write(head(ures.statusCode ?? 502, ures.statusMessage, [...kept, 'Connection', 'close']));
    ures.pipe(socket);
    ures.once('error', () => socket.destroy());
  });

  up.on('error', (err: NodeJS.ErrnoException) => {
    if (answered || socket.destroyed) return void socket.destroy();
    answered = true;
    writeJson(socket, 502, failure(target, err));
  });

  up.end();
}
