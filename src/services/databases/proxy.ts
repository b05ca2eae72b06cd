import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { Logger } from '../../core/log.ts';
import type { PgServer } from './server.ts';

const SSL_REQUEST = 80877103;
const GSS_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const PROTOCOL_3 = 196608;
/** A startup packet is small; more is not PostgreSQL. */
const MAX_STARTUP = 10_000;

/**
 * With an operator's server, sandboxes still connect to the bridge's host address (the port
 * the firewall opens to granted sandboxes only): this forwarder relays them to the server.
 * It reads the startup packet first and lets through only the role of the database granted to
 * the sandbox's address, to that database (what `pg_hba`'s `sameuser` does on Cove's own
 * cluster, which an operator's server does not have): a sandbox cannot try the admin or another
 * agent's role, whatever it knows. TLS to the sandbox is declined (the bridge is local); to the
 * server it follows the admin URL's sslmode. Connections end with Cove's process, unlike those
 * to Cove's own cluster.
 */
export function createForwarder(
  server: PgServer,
  roleAt: (address: string) => string | undefined,
  log: Logger,
) {
  const target = server.target;
  if (!target) throw new Error('a forwarder needs an external server');
  const open_ = new Set<Socket>();
  const tcp = createServer((client) => {
    open_.add(client);
    client.on('close', () => open_.delete(client));
    client.on('error', () => {});
    handle(client).catch((err: unknown) => {
      log.debug({ err }, 'database connection refused');
      client.destroy();
    });
  });

  async function handle(client: Socket): Promise<void> {
    let packet = await readPacket(client);
    while (packet.code === SSL_REQUEST || packet.code === GSS_REQUEST) {
      client.write('N');
      packet = await readPacket(client);
    }
    if (packet.code !== CANCEL_REQUEST) {
      if (packet.code !== PROTOCOL_3) return refuse(client, '08P01', 'unsupported protocol');
      const params = startupParams(packet.bytes);
      const role = roleAt(client.remoteAddress?.replace(/^::ffff:/, '') ?? '');
      if (!role || params.user !== role || (params.database ?? params.user) !== role)
        return refuse(
          client,
          '28000',
          'Cove: a sandbox connects only as its own database role, to its own database (DATABASE_URL)',
        );
    }
    const upstream = await open();
    upstream.write(packet.bytes);
    client.pipe(upstream).pipe(client);
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  }

  async function open(): Promise<Socket> {
    const t = target!;
    const raw = t.socket ? netConnect(t.socket) : netConnect(t.port, t.host);
    await new Promise<void>((resolve, reject) => raw.once('connect', resolve).once('error', reject));
    if (t.socket || t.sslmode === 'disable' || t.sslmode === 'allow') return raw;
    const request = Buffer.alloc(8);
    request.writeInt32BE(8, 0);
    request.writeInt32BE(SSL_REQUEST, 4);
    raw.write(request);
    const answer = await new Promise<string>((resolve, reject) =>
      raw.once('data', (d: Buffer) => resolve(d.subarray(0, 1).toString())).once('error', reject),
    );
    if (answer !== 'S') {
      if (t.sslmode === 'prefer') return raw;
      raw.destroy();
      throw new Error(`the database server refused TLS (sslmode ${t.sslmode})`);
    }
    const rootCert = t.rootCert;
    const tls = tlsConnect({
      socket: raw,
      servername: t.host,
      rejectUnauthorized: t.sslmode.startsWith('verify'),
      ...(t.sslmode === 'verify-ca' && { checkServerIdentity: () => undefined }),
      ...(rootCert && { ca: readFileSync(rootCert) }),
    });
    await new Promise<void>((resolve, reject) => tls.once('secureConnect', resolve).once('error', reject));
    return tls;
  }

  return {
    listen: (host: string, port: number) =>
      new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host, port, exclusive: true }, () => resolve());
      }),
    close: () =>
      new Promise<void>((resolve) => {
        tcp.close(() => resolve());
        for (const s of open_) s.destroy();
      }),
  };
}

/** The first packet: int32 length (itself included), int32 code, then the body. */
function readPacket(socket: Socket): Promise<{ code: number; bytes: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 8) return;
      const length = buf.readInt32BE(0);
      if (length < 8 || length > MAX_STARTUP) return done(new Error('not a PostgreSQL startup packet'));
      if (buf.length < length) return;
      if (buf.length > length) return done(new Error('data before the server answered'));
      done(undefined, { code: buf.readInt32BE(4), bytes: buf });
    };
    const onEnd = () => done(new Error('closed during startup'));
    const timer = setTimeout(() => done(new Error('startup timed out')), 15_000);
    function done(err?: Error, value?: { code: number; bytes: Buffer }) {
      clearTimeout(timer);
      socket.off('data', onData).off('end', onEnd).off('error', onEnd);
      if (err) reject(err);
      else resolve(value!);
    }
    socket.on('data', onData).on('end', onEnd).on('error', onEnd);
  });
}

/** The startup packet's NUL-terminated name/value pairs. */
export function startupParams(bytes: Buffer): Record<string, string> {
  const parts = bytes.subarray(8).toString('utf8').split('\0');
  const params: Record<string, string> = {};
  for (let i = 0; i + 1 < parts.length && parts[i]; i += 2) params[parts[i]!] = parts[i + 1]!;
  return params;
}

/** An ErrorResponse the client shows as it would the server's own, then the end. */
function refuse(client: Socket, code: string, message: string): void {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${code}\0M${message}\0\0`, 'utf8');
  const head = Buffer.alloc(5);
  head.write('E', 0);
  head.writeInt32BE(4 + fields.length, 1);
  client.end(Buffer.concat([head, fields]));
}
