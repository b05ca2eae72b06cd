import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { BlockList, connect, createServer, isIPv4, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { matchesDomain, type EgressPolicy } from './egress-policy.ts';
import type { EgressPorts } from './egress-rules.ts';
import { httpHost, tlsServerName } from './sni.ts';

/**
 * Where allowed domain names are told apart, on the host, listening on the bridge's address:
 * - two TCP listeners that a restricted sandbox's connections to ports 80 and 443 are
 *   redirected to (egress-rules.ts). Each reads the request's Host or the ClientHello's SNI,
 *   and, when the name matches one of the sandbox's allowed domains, resolves it itself and
 *   connects to port 80 or 443 of what it resolves to, then splices the two sockets. Anything
 *   else is reset at once. Resolving here, not trusting the address the sandbox dialled, is
 *   what keeps a sandbox from pairing an allowed name with any address of its choice (its
 *   /etc/hosts is its own); the address it gets must still be public (ALWAYS_DENIED);
 * - a UDP DNS relay that a restricted sandbox's queries to any port-53 address are redirected
 *   to, which forwards them unchanged to the host's resolver, so that names resolve alike in
 *   the sandbox and here.
 * Plain `node:net`/`node:dgram`: the proxy must see the first bytes before choosing where to
 * connect, which HTTP proxy libraries (they terminate HTTP) do not offer for TLS.
 */
export interface EgressProxy {
  ports: EgressPorts;
  close(): Promise<void>;
}

export interface EgressProxyOptions {
  /** The bridge's own address: the redirect target. */
  address: string;
  /** The policy of the sandbox with this address, if it has one. */
  policyOf: (sandboxAddress: string) => EgressPolicy | undefined;
  /** DNS servers (`ip` or `ip:port`) for the relay and for the proxy's own lookups. */
  dns: string[];
  /** Reading the name and connecting each get this long. */
  timeoutMs?: number;
}

/** Where a domain may never lead, whatever it resolves to: the host's and private networks. */
const ALWAYS_DENIED: Array<[string, number]> = [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // RFC 1918 (sandboxes live here)
  ['100.64.0.0', 10], // carrier-grade NAT, cloud-internal services
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata
  ['172.16.0.0', 12], // RFC 1918
  ['192.168.0.0', 16], // RFC 1918
  ['224.0.0.0', 3], // multicast and reserved
];

const MAX_DNS_INFLIGHT = 512;
/** Connections one sandbox may hold open through the proxy at once; more are reset. */
const MAX_PER_SANDBOX = 1024;

export async function startEgressProxy(opts: EgressProxyOptions): Promise<EgressProxy> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const denied = new BlockList();
  for (const [net, prefix] of ALWAYS_DENIED) denied.addSubnet(net, prefix, 'ipv4');
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4') denied.addAddress(a.address, 'ipv4');
  const resolver = new Resolver({ timeout: 3000, tries: 2 });
  if (opts.dns.length > 0) resolver.setServers(opts.dns);
  const sockets = new Set<Socket>();
  const perSandbox = new Map<string, number>();

  function handle(client: Socket, port: 80 | 443): void {
    const source = (client.remoteAddress ?? '').replace(/^::ffff:/, '');
    const open = (perSandbox.get(source) ?? 0) + 1;
    if (open > MAX_PER_SANDBOX) return void client.resetAndDestroy();
    perSandbox.set(source, open);
    sockets.add(client);
    client.once('close', () => {
      sockets.delete(client);
      const left = (perSandbox.get(source) ?? 1) - 1;
      if (left > 0) perSandbox.set(source, left);
      else perSandbox.delete(source);
    });
    client.on('error', () => client.destroy());
    client.setTimeout(timeoutMs, () => client.destroy());
    let head = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk]);
      const name = port === 443 ? tlsServerName(head) : httpHost(head);
      if (name === undefined) return;
      client.off('data', onData);
      client.pause();
      const policy = opts.policyOf(source);
      if (name === null || !policy?.allowDomains.some((d) => matchesDomain(name, d))) return refuse(client);
      void forward(client, name, port, head);
    };
    client.on('data', onData);
  }

  async function forward(client: Socket, name: string, port: number, head: Buffer): Promise<void> {
    const addresses = await resolver.resolve4(name).catch(() => [] as string[]);
    const target = addresses.find((a) => isIPv4(a) && !denied.check(a, 'ipv4'));
    if (target === undefined || client.destroyed) return refuse(client);
    const upstream = connect({ host: target, port });
    sockets.add(upstream);
    upstream.once('close', () => sockets.delete(upstream));
    upstream.setTimeout(timeoutMs, () => upstream.destroy());
    upstream.once('connect', () => {
      upstream.setTimeout(0);
      client.setTimeout(0);
      upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on('error', () => refuse(client));
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
  }

  function refuse(client: Socket): void {
    // A reset, not a clean close: the sandbox's client fails at once and says so.
    if (!client.destroyed) client.resetAndDestroy();
  }

  const listen = (port: 80 | 443): Promise<Server> =>
    new Promise((resolve, reject) => {
      const server = createServer((s) => handle(s, port));
      server.once('error', reject);
      server.listen(0, opts.address, () => resolve(server));
    });
  const http = await listen(80);
  const tls = await listen(443);
  const relay = await startDnsRelay(opts);

  const portOf = (s: Server) => (s.address() as { port: number }).port;
  return {
    ports: { http: portOf(http), tls: portOf(tls), dns: relay.port },
    async close() {
      for (const s of sockets) s.destroy();
      relay.close();
      await Promise.all([http, tls].map((s) => new Promise((r) => s.close(r))));
    },
  };
}

/**
 * Forwards each query, bytes unchanged, to the first DNS server and sends the answer back to
 * the sandbox; one socket per query keeps answers from being mixed up (ids are the sandbox's
 * to choose). Queries from addresses with no policy are ignored. UDP only: an answer too large
 * for UDP comes back truncated, and the retry over TCP is refused like other traffic.
 */
async function startDnsRelay(opts: EgressProxyOptions): Promise<{ port: number; close(): void }> {
  const upstream = parseServer(opts.dns[0]);
  const server = createSocket('udp4');
  const inflight = new Set<UdpSocket>();
  server.on('message', (query, from) => {
    if (!upstream || query.length > 4096 || inflight.size >= MAX_DNS_INFLIGHT) return;
    if (!opts.policyOf(from.address)) return;
    const socket = createSocket('udp4');
    inflight.add(socket);
    const done = () => {
      clearTimeout(timer);
      inflight.delete(socket);
      socket.close();
    };
    const timer = setTimeout(done, 5000);
    socket.on('error', done);
    socket.once('message', (answer) => {
      server.send(answer, from.port, from.address);
      done();
    });
    socket.send(query, upstream.port, upstream.host);
  });
  server.on('error', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.bind(0, opts.address, () => resolve());
  });
  return {
    port: server.address().port,
    close() {
      for (const s of inflight) s.close();
      server.close();
    },
  };
}

function parseServer(server: string | undefined): { host: string; port: number } | undefined {
  if (!server) return undefined;
  const m = /^([\d.]+)(?::(\d+))?$/.exec(server);
  return m ? { host: m[1]!, port: Number(m[2] ?? 53) } : undefined;
}
