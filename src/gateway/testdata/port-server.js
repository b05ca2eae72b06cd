// A server for the port proxy's tests, run both on the host (unit tests) and inside a sandbox
// (test/e2b/ports.test.ts, under the base template's Debian Node 18): so plain ESM, Node's
// standard library only, no TypeScript. Usage: node port-server.js <port> [host].
//
//   GET  /headers   the request's method, url, raw headers and client port, as JSON
//   POST /echo      the body back, each chunk as it arrives (streams both ways)
//   GET  /stream    "first\n" at once, then "last\n" and the end after GET /release
//   GET  /cookies   two Set-Cookie headers and a custom status text
//   any upgrade     a WebSocket echo (text, binary, ping → pong, close)
import { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { createServer } from 'node:http';
import process from 'node:process';

const port = Number(process.argv[2] ?? 8080);
const host = process.argv[3] ?? '0.0.0.0';
let release = [];

const server = createServer((req, res) => {
  if (req.url === '/headers') {
    res.setHeader('content-type', 'application/json');
    return res.end(
      JSON.stringify({
        method: req.method,
        url: req.url,
        rawHeaders: req.rawHeaders,
        remotePort: req.socket.remotePort,
      }),
    );
  }
  if (req.url === '/echo') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    return req.pipe(res);
  }
  if (req.url === '/stream') {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('first\n');
    return release.push(() => res.end('last\n'));
  }
  if (req.url === '/release') {
    for (const done of release) done();
    release = [];
    return res.end('released');
  }
  if (req.url === '/cookies') {
    res.writeHead(201, 'Made Here', [
      ['Set-Cookie', 'a=1'],
      ['Set-Cookie', 'b=2'],
      ['X-Server', 'fixture'],
    ]);
    return res.end('cookies');
  }
  res.writeHead(404);
  res.end('not here');
});

server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key'];
  if (req.headers.upgrade?.toLowerCase() !== 'websocket' || !key) return socket.destroy();
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  socket.write(
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      `Sec-WebSocket-Accept: ${accept}\r\n\r\n`,
  );
  let buffered = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      const frame = parseFrame(buffered);
      if (!frame) return;
      buffered = buffered.subarray(frame.size);
      if (frame.opcode === 0x8) return socket.end(encodeFrame(0x8, frame.payload));
      if (frame.opcode === 0x9) socket.write(encodeFrame(0xa, frame.payload));
      else if (frame.opcode === 0x1 || frame.opcode === 0x2)
        socket.write(encodeFrame(frame.opcode, frame.payload));
    }
  });
});

/** One client frame (RFC 6455 §5.2: always masked), or undefined until it is all here. */
function parseFrame(buf) {
  if (buf.length < 2) return undefined;
  const opcode = buf[0] & 0x0f;
  let length = buf[1] & 0x7f;
  let offset = 2;
  if (length === 126) {
    if (buf.length < 4) return undefined;
    length = buf.readUInt16BE(2);
    offset = 4;
  } else if (length === 127) {
    if (buf.length < 10) return undefined;
    length = Number(buf.readBigUInt64BE(2));
    offset = 10;
  }
  const masked = (buf[1] & 0x80) !== 0;
  const mask = masked ? buf.subarray(offset, offset + 4) : undefined;
  if (masked) offset += 4;
  if (buf.length < offset + length) return undefined;
  const payload = Buffer.from(buf.subarray(offset, offset + length));
  if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
  return { opcode, payload, size: offset + length };
}

/** A server frame: final, unmasked. */
function encodeFrame(opcode, payload) {
  const head =
    payload.length < 126
      ? Buffer.from([0x80 | opcode, payload.length])
      : payload.length < 65536
        ? Buffer.from([0x80 | opcode, 126, payload.length >> 8, payload.length & 255])
        : Buffer.concat([Buffer.from([0x80 | opcode, 127]), bigLength(payload.length)]);
  return Buffer.concat([head, payload]);
}

function bigLength(n) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

server.listen(port, host, () => process.stdout.write(`listening on ${server.address().port}\n`));
