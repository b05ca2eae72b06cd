import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { Resolver } from 'node:dns/promises';
import { BlockList, connect, createServer, isIPv4, type Server, type Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { originalTarget, type Accepted } from './conntrack.ts';
import { createInterception, type InterceptOptions } from './egress-intercept.ts';
import { matchesDomain, type EgressPolicy } from './egress-policy.ts';
import type { EgressPorts } from './egress-rules.ts';
import { dialUpstream, type Upstream } from './egress-upstream.ts';
import { httpHost, tlsServerName } from './sni.ts';
import { rulesFor } from './transform-rules.ts';

/**
 * Where allowed domain names are told apart, on the host, listening on the bridge's address:
 * - two TCP listeners that a restricted sandbox's connections to ports 80 and 443 are
 *   redirected to (egress-rules.ts). Each reads the request's Host or the ClientHello's SNI,
 *   and, when the name matches one of the sandbox's allowed domains, resolves it itself and
 *   connects to port 80 or 443 of what it resolves to, then splices the two sockets. Anything
 *   else is reset at once. Resolving here, not trusting the address the sandbox dialled, is
 *   what keeps a sandbox from pairing an allowed name with any address of its choice (its
 *   /etc/hosts is its own); the address it gets must still be public (ALWAYS_DENIED).
 *   A name with header rules (transform-rules.ts) is intercepted instead (egress-intercept.ts):
 *   its requests are rewritten on their way to what the proxy resolves. Rules grant no
 *   access: the name must be allowed, or the address it resolves to not denied. Any other
 *   connection of a sandbox that is here only for its rules goes on untouched to the address
 *   it was sent to (conntrack.ts), if the sandbox's CIDR policy lets it;
 * - for a sandbox with an upstream proxy (egressProxy, egress-upstream.ts), a third listener
 *   that all its other TCP is redirected to; after the same checks, every connection (on any
 *   port, the two above included) is opened through the upstream instead of directly: by
 *   name for an allowed domain, else to the address the sandbox dialled;
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
  /** Header rules are applied with these; without them no connection is intercepted. */
  intercept?: InterceptOptions;
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
  const interception = opts.intercept && createInterception(opts.intercept);
  const cidrs = new WeakMap<EgressPolicy, { allow: BlockList; deny: BlockList }>();
  /** Whether the sandbox's CIDR lists let it reach `address` (allow wins over deny, spec 2.11). */
  function addressAllowed(policy: EgressPolicy, address: string): boolean {
    let lists = cidrs.get(policy);
    if (!lists) {
      lists = { allow: blockList(policy.allowCidrs), deny: blockList(policy.denyCidrs) };
      cidrs.set(policy, lists);
    }
    return lists.allow.check(address, 'ipv4') || !lists.deny.check(address, 'ipv4');
  }
  const publicAddress = async (name: string) => {
    const addresses = await resolver.resolve4(name).catch(() => [] as string[]);
    return addresses.find((a) => isIPv4(a) && !denied.check(a, 'ipv4'));
  };

  /** Counts the connection against its sandbox's limit; undefined: refused (reset). */
  function admit(client: Socket): string | undefined {
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
    return source;
  }

  function handle(client: Socket, port: 80 | 443): void {
    const source = admit(client);
    if (source === undefined) return;
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
      if (!policy) return refuse(client);
      void route(client, source, policy, name, port, head).catch(() => refuse(client));
    };
    client.on('data', onData);
  }

  async function route(
    client: Socket,
    source: string,
    policy: EgressPolicy,
    name: string | null,
    port: 80 | 443,
    head: Buffer,
  ): Promise<void> {
    const allowedName = name !== null && policy.allowDomains.some((d) => matchesDomain(name, d));
    const ruled = name !== null && interception ? rulesFor(policy.rules, name) : undefined;
    const up = policy.upstream;
    const intercept = (address: string) => {
      client.setTimeout(0); // the HTTP server's own timeouts hold from here
      const { domain, rules } = ruled!;
      const upstream = up && (() => upstreamSocket(up, name!, port));
      const target = { name: name!, address, port, source, rules, domain, ...(upstream && { upstream }) };
      return interception!.handle(client, head, target);
    };
    if (name !== null && (allowedName || ruled)) {
      // An allowed name through an upstream: its DNS, not ours (upstream's "remote DNS").
      if (up && allowedName) return ruled ? intercept(name) : tunnel(client, up, name, port, head);
      const target = await publicAddress(name);
      if (target === undefined || client.destroyed) return refuse(client);
      if (!ruled) return splice(client, target, port, head);
      if (!allowedName && !addressAllowed(policy, target)) return refuse(client);
      return intercept(target);
    }
    // Here only for its rules or its upstream: to where it was sent, as without the proxy.
    const sent = (await originalTarget(accepted(client, source)))?.address;
    if (sent === undefined || denied.check(sent, 'ipv4') || !addressAllowed(policy, sent))
      return refuse(client);
    if (up) return tunnel(client, up, sent, port, head);
    splice(client, sent, port, head);
  }

  /** Any other port of a sandbox with an upstream: checked like the rest, then tunnelled. */
  function handleTunnel(client: Socket): void {
    const source = admit(client);
    if (source === undefined) return;
    client.on('error', () => client.destroy());
    client.pause();
    const policy = opts.policyOf(source);
    const up = policy?.upstream;
    void originalTarget(accepted(client, source))
      .then((sent) => {
        if (
          !up ||
          !policy ||
          !sent ||
          denied.check(sent.address, 'ipv4') ||
          !addressAllowed(policy, sent.address)
        )
          return refuse(client);
        return tunnel(client, up, sent.address, sent.port, Buffer.alloc(0));
      })
      .catch(() => refuse(client));
  }

  /**
   * A connection through the upstream. Its name is resolved here and the address pinned for
   * this connection; like any destination, it may not be the host's or a private network's.
   */
  async function upstreamSocket(up: Upstream, host: string, port: number): Promise<Socket> {
    const address = isIPv4(up.host)
      ? denied.check(up.host, 'ipv4')
        ? undefined
        : up.host
      : await publicAddress(up.host);
    if (address === undefined) throw new Error(`egress proxy ${up.host} has no public address`);
    const socket = await dialUpstream(up, address, { host, port }, timeoutMs);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    return socket;
  }

  /** Splices the client to `host:port` through the upstream; any failure resets the client. */
  async function tunnel(
    client: Socket,
    up: Upstream,
    host: string,
    port: number,
    head: Buffer,
  ): Promise<void> {
    let upstream: Socket;
    try {
      upstream = await upstreamSocket(up, host, port);
    } catch {
      return refuse(client);
    }
    if (client.destroyed) return void upstream.destroy();
    client.setTimeout(0);
    upstream.on('error', () => client.destroy());
    upstream.once('close', () => client.destroy());
    client.once('close', () => upstream.destroy());
    if (head.length > 0) upstream.write(head);
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }

  function splice(client: Socket, target: string, port: number, head: Buffer): void {
    if (client.destroyed) return;
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

  const listen = (port: 80 | 443 | 'any'): Promise<Server> =>
    new Promise((resolve, reject) => {
      const server = createServer((s) => (port === 'any' ? handleTunnel(s) : handle(s, port)));
      server.once('error', reject);
      server.listen(0, opts.address, () => resolve(server));
    });
  const http = await listen(80);
  const tls = await listen(443);
  const tunnelled = await listen('any');
  const relay = await startDnsRelay(opts);

  const portOf = (s: Server) => (s.address() as { port: number }).port;
  return {
    ports: { http: portOf(http), tls: portOf(tls), tunnel: portOf(tunnelled), dns: relay.port },
    async close() {
      for (const s of sockets) s.destroy();
      relay.close();
      interception?.close();
      await Promise.all([http, tls, tunnelled].map((s) => new Promise((r) => s.close(r))));
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

/** The socket's own four addresses: what its conntrack entry is found by (conntrack.ts). */
function accepted(client: Socket, source: string): Accepted {
  return {
    source,
    sourcePort: client.remotePort ?? 0,
    proxy: client.localAddress ?? '',
    proxyPort: client.localPort ?? 0,
  };
}

function blockList(cidrs: string[]): BlockList {
  const list = new BlockList();
  for (const c of cidrs) {
    const [net, prefix] = c.split('/');
    list.addSubnet(net!, Number(prefix ?? 32), 'ipv4');
  }
  return list;
}

function parseServer(server: string | undefined): { host: string; port: number } | undefined {
  if (!server) return undefined;
  const m = /^([\d.]+)(?::(\d+))?$/.exec(server);
  return m ? { host: m[1]!, port: Number(m[2] ?? 53) } : undefined;
}
