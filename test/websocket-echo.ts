import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';

/**
 * A WebSocket server small enough to read (RFC 6455: handshake, unfragmented frames), for the
 * stand-in internet (netns-internet-server.ts), so the egress tests need no WebSocket library.
 * On `/ws` it first sends a text frame with the address, Host and headers it was reached with,
 * then answers each text frame with `echo:<text>`, and a close with a close. Any other path
 * refuses the upgrade with a 403 and a body.
 */
export function websocketEcho(req: IncomingMessage, socket: Duplex, head: Buffer): void {
  const key = req.headers['sec-websocket-key'];
  if (!req.url?.startsWith('/ws') || typeof key !== 'string') {
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 10\r\nconnection: close\r\n\r\nno socket\n');
    return;
  }
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  const address = (req.socket as { localAddress?: string }).localAddress;
  socket.write(frame(1, JSON.stringify({ address, host: req.headers.host ?? '', headers: req.headers })));
  let buffered = head;
  const onData = (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (let f = parse(buffered); f; f = parse(buffered)) {
      buffered = buffered.subarray(f.size);
      if (f.opcode === 8) return void socket.end(frame(8, ''));
      if (f.opcode === 1) socket.write(frame(1, `echo:${f.payload.toString('utf8')}`));
    }
  };
  socket.on('data', onData);
  socket.on('error', () => socket.destroy());
  if (head.length > 0) onData(Buffer.alloc(0));
}

/** An unmasked server frame (FIN set) of `opcode` with `text`. */
function frame(opcode: number, text: string): Buffer {
  const payload = Buffer.from(text, 'utf8');
  const len = payload.length;
  const header =
    len < 126 ? Buffer.from([0x80 | opcode, len]) : Buffer.from([0x80 | opcode, 126, len >> 8, len & 0xff]);
  return Buffer.concat([header, payload]);
}

/** The first complete frame of `buf` (client frames are masked), or undefined. */
function parse(buf: Buffer): { opcode: number; payload: Buffer; size: number } | undefined {
  if (buf.length < 2) return undefined;
  const opcode = buf[0]! & 0x0f;
  const masked = (buf[1]! & 0x80) !== 0;
  let len = buf[1]! & 0x7f;
  let at = 2;
  if (len === 126) {
    if (buf.length < 4) return undefined;
    len = buf.readUInt16BE(2);
    at = 4;
  } else if (len === 127) {
    if (buf.length < 10) return undefined;
    len = Number(buf.readBigUInt64BE(2));
    at = 10;
  }
  const mask = masked ? buf.subarray(at, at + 4) : undefined;
  if (masked) at += 4;
  if (buf.length < at + len) return undefined;
  const payload = Buffer.from(buf.subarray(at, at + len));
  if (mask) for (let i = 0; i < payload.length; i++) payload[i]! ^= mask[i % 4]!;
  return { opcode, payload, size: at + len };
}
