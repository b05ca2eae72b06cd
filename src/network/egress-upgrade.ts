import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * The upgrade half of the egress proxy's interception (egress-intercept.ts): a WebSocket
 * handshake (or any `Upgrade` request) to a ruled domain, its headers already rewritten, is
 * sent to the real server on a connection of its own. When the server agrees (101), its
 * answer goes back to the sandbox as it came and the two connections are spliced byte for
 * byte, both ways, until either ends: frames are not parsed, so any subprotocol and extension
 * works. When it answers anything else, that answer goes back and the connection closes.
 * Node's HTTP server hands an upgrade over as a raw socket, so answers are written as bytes.
 */
export function forwardUpgrade(client: Duplex, head: Buffer, upstream: ClientRequest, name: string): void {
  let answered = false;
  client.on('error', () => upstream.destroy());
  client.once('close', () => upstream.destroy());
  upstream.on('upgrade', (answer: IncomingMessage, server: Duplex, serverHead: Buffer) => {
    answered = true;
    if (client.destroyed) return void server.destroy();
    client.write(statusLine(answer) + rawHeaders(answer.rawHeaders) + '\r\n');
    if (serverHead.length > 0) client.write(serverHead);
    if (head.length > 0) server.write(head);
    server.on('error', () => client.destroy());
    server.once('close', () => client.destroy());
    client.once('close', () => server.destroy());
    client.pipe(server);
    server.pipe(client);
  });
  upstream.on('response', (answer: IncomingMessage) => {
    // Refused (a 4xx, a redirect...): the answer as it came, its body delimited by the close.
    answered = true;
    const kept: string[] = [];
    for (let i = 0; i + 1 < answer.rawHeaders.length; i += 2) {
      const key = answer.rawHeaders[i]!.toLowerCase();
      if (
        key !== 'connection' &&
        key !== 'transfer-encoding' &&
        key !== 'content-length' &&
        key !== 'keep-alive'
      )
        kept.push(answer.rawHeaders[i]!, answer.rawHeaders[i + 1]!);
    }
    client.write(`${statusLine(answer)}${rawHeaders(kept)}connection: close\r\n\r\n`);
    answer.pipe(client);
    answer.on('error', () => client.destroy());
  });
  upstream.on('error', (err) =>
    answered ? client.destroy() : refuseUpgrade(client, 502, `${name}: ${err.message}`),
  );
  upstream.end();
}

/** Answers an upgrade request with an error of the proxy's own and closes. */
export function refuseUpgrade(client: Duplex, status: number, message: string): void {
  if (client.destroyed || !client.writable) return void client.destroy();
  const body = `cove egress proxy: ${message}\n`;
  client.end(
    `HTTP/1.1 ${status} ${STATUS[status] ?? 'Error'}\r\ncontent-type: text/plain; charset=utf-8\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

const STATUS: Record<number, string> = { 421: 'Misdirected Request', 502: 'Bad Gateway' };

const statusLine = (answer: IncomingMessage) =>
  `HTTP/1.1 ${answer.statusCode ?? 502} ${answer.statusMessage ?? ''}\r\n`;

function rawHeaders(raw: string[]): string {
  let out = '';
  for (let i = 0; i + 1 < raw.length; i += 2) out += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return out;
}
