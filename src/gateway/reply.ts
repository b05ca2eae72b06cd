import { STATUS_CODES, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * The gateway's own answers, in upstream's JSON shape (infra shared/pkg/proxy/template): the
 * fields first, then `code` = the status. Key order is part of the contract: the bodies are
 * compared as text by tests written against E2B.
 */
export type GatewayBody = Record<string, unknown>;

function text(status: number, body: GatewayBody): string {
  return JSON.stringify({ ...body, code: status });
}

export function sendJson(res: ServerResponse, status: number, body: GatewayBody): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text(status, body));
}

/**
 * The same answer on a socket whose request asked for an upgrade: Node hands such a socket
 * over raw, so the response is written by hand, and the connection ends with it.
 */
export function writeJson(socket: Duplex, status: number, body: GatewayBody): void {
  const payload = text(status, body);
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n` +
      'Content-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(payload)}\r\n` +
      'Connection: close\r\n\r\n' +
      payload,
  );
}

export const sandboxNotFound = (sandboxId: string): GatewayBody => ({
  sandboxId,
  message: 'The sandbox was not found',
});

/** Upstream's port_closed.go; the port is a number, as E2B's own proxy test decodes it. */
export const portClosed = (sandboxId: string, port: number): GatewayBody => ({
  sandboxId,
  message: 'The sandbox is running but port is not open',
  port,
});

/**
 * The server in the sandbox accepted the connection but its answer was not HTTP, too large
 * (Node's header limit), or cut before its head. Upstream answers these with a plain-text
 * "Failed to route request to sandbox"; Cove keeps the JSON shape and says which.
 */
export const badUpstream = (sandboxId: string, port: number, reason: string): GatewayBody => ({
  sandboxId,
  message: `The server on the sandbox's port did not answer with HTTP: ${reason}`,
  port,
});
