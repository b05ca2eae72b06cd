import { connect } from 'node:tls';
import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { httpHost, tlsServerName } from './sni.ts';

/** The first bytes Node's own TLS client sends for `servername`. */
async function clientHello(servername?: string): Promise<Buffer> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf);
          s.destroy();
        }
      });
    }),
  );
  const client = connect({ host: '127.0.0.1', port, ...(servername && { servername }) });
  client.on('error', () => {});
  const hello = await got;
  client.destroy();
  server.close();
  return hello;
}

describe('names from first bytes', () => {
  it('reads the SNI of a real ClientHello, waits for the rest, refuses what has none', async () => {
    const hello = await clientHello('Allowed.Example.test');
    expect(tlsServerName(hello)).toBe('allowed.example.test');
    expect(tlsServerName(hello.subarray(0, 40))).toBeUndefined();
    expect(tlsServerName(await clientHello())).toBeNull();
    expect(tlsServerName(Buffer.from('GET / HTTP/1.1\r\n'))).toBeNull();
    // a lying length: never read past what came
    const bad = Buffer.from(hello);
    bad.writeUInt16BE(0xffff, 3);
    expect(tlsServerName(bad)).toBeNull();
  });

  it('reads one Host of an HTTP/1 head', () => {
    expect(httpHost(Buffer.from('GET / HTTP/1.1\r\nHost: a.test:8080\r\n\r\n'))).toBe('a.test');
    expect(httpHost(Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\n'))).toBeUndefined();
    expect(httpHost(Buffer.from('GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n'))).toBeNull();
    expect(httpHost(Buffer.from('GET / HTTP/1.1\r\nHost: 1.2.3.4\r\n\r\n'))).toBeNull();
    expect(httpHost(Buffer.from('\x16\x03\x01junk\r\n\r\n'))).toBeNull();
    expect(httpHost(Buffer.alloc(20_000, 'a'))).toBeNull();
  });
});
