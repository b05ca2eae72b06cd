import { isIPv4, type Socket } from 'node:net';
import { SocksClient } from 'socks';
import { CoveError } from '../core/errors.ts';

/**
 * A sandbox's own upstream proxy (E2B `network.egressProxy`, spec 2.11): a SOCKS5 server
 * (RFC 1928, user/password auth RFC 1929) that the egress proxy opens every one of the
 * sandbox's outbound TCP connections through, after the sandbox's allow/deny filtering.
 * Connections to an allowed domain name ask the upstream by name (ATYP domain: its DNS, not
 * ours); others by the address the sandbox dialled. There is no fallback: when the upstream
 * cannot be reached or refuses, the sandbox's connection is reset (fail closed).
 * [`socks`](https://github.com/JoshGlazebrook/socks): the maintained SOCKS client most Node
 * proxy agents build on; the handshake is small but its error cases are many.
 */
export interface EgressProxyConfig {
  /** `host:port`, as given. */
  address: string;
  username?: string;
  /** Never returned by the API (get-info shows address and username). */
  password?: string;
}

export interface Upstream {
  host: string;
  port: number;
  username?: string;
  password?: string;
}

const bad = (message: string) => new CoveError('invalid_argument', `network.egressProxy: ${message}`);
const HOST = /^(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*$/i;
const MAX_CREDENTIAL = 255;

/**
 * Validates `egressProxy` as a create or an update gives it (null/undefined: none), as the
 * SDK's type and upstream's checks have it: `host:port` (a DNS name or an IPv4 address; IPv6
 * is not routed for sandboxes), username and password of at most 255 bytes, a password only
 * with a username.
 */
export function parseEgressProxy(input: unknown): EgressProxyConfig | undefined {
  if (input === undefined || input === null) return undefined;
  if (typeof input !== 'object' || Array.isArray(input)) throw bad('must be {address, username?, password?}');
  const { address, username, password } = input as Record<string, unknown>;
  if (typeof address !== 'string') throw bad('address is required ("host:port")');
  const m = /^(.+):(\d{1,5})$/.exec(address);
  const port = Number(m?.[2]);
  if (!m || !(port >= 1 && port <= 65535) || !(isIPv4(m[1]!) || HOST.test(m[1]!)))
    throw bad(`address "${address.slice(0, 80)}" is not host:port (proxy.example.com:1080)`);
  for (const [field, value] of [
    ['username', username],
    ['password', password],
  ] as const)
    if (value !== undefined && value !== null) {
      if (typeof value !== 'string' || Buffer.byteLength(value) > MAX_CREDENTIAL || value.length === 0)
        throw bad(`${field} must be a string of 1-${MAX_CREDENTIAL} bytes`);
    }
  if (password != null && username == null) throw bad('a password needs a username');
  return {
    address,
    ...(typeof username === 'string' && { username }),
    ...(typeof password === 'string' && { password }),
  };
}

/** The upstream of a validated config: its host and port apart. */
export function upstreamOf(config: EgressProxyConfig): Upstream {
  const at = config.address.lastIndexOf(':');
  return {
    host: config.address.slice(0, at).toLowerCase(),
    port: Number(config.address.slice(at + 1)),
    ...(config.username !== undefined && { username: config.username }),
    ...(config.password !== undefined && { password: config.password }),
  };
}

/**
 * A connection to `host:port` through the upstream, whose address `proxyAddress` is the one
 * already resolved and checked by the caller (a name is resolved once, then pinned).
 */
export async function dialUpstream(
  upstream: Upstream,
  proxyAddress: string,
  destination: { host: string; port: number },
  timeoutMs: number,
): Promise<Socket> {
  const { socket } = await SocksClient.createConnection({
    proxy: {
      host: proxyAddress,
      port: upstream.port,
      type: 5,
      ...(upstream.username !== undefined && { userId: upstream.username }),
      ...(upstream.password !== undefined && { password: upstream.password }),
    },
    destination,
    command: 'connect',
    timeout: timeoutMs,
  });
  return socket;
}
