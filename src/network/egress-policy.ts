import { CoveError } from '../core/errors.ts';
import type { SandboxIdentity } from '../identity/iam.ts';
import { parseEgressProxy, upstreamOf, type EgressProxyConfig, type Upstream } from './egress-upstream.ts';
import { parseRules, type TransformRules } from './transform-rules.ts';

/**
 * A sandbox's network settings (E2B `SandboxNetworkConfig` and `allow_internet_access`, spec
 * 2.3 and 2.11), validated, as the store keeps them and get-info returns them. `allowOut`
 * holds CIDRs (a bare address becomes /32) and lowercased domain patterns; `denyOut` CIDRs only.
 */
export interface SandboxNetwork {
  allowOut: string[];
  denyOut: string[];
  allowInternetAccess: boolean;
  /** false: the port proxy wants the sandbox's traffic access token (gateway). */
  allowPublicTraffic: boolean;
  /** Host header for proxied requests, `${PORT}` replaced by the port. */
  maskRequestHost?: string;
  /** Ports whose server the port proxy reaches over TLS (certificates not verified). */
  httpsPorts: number[];
  /** Per-domain header transforms the egress proxy applies (transform-rules.ts); none: absent. */
  rules?: TransformRules;
  /** The API key id that set `rules`: their `${e2b.secrets.<name>}` are that key's secrets. */
  secretsOwner?: string;
  /** The SOCKS5 proxy all its outbound TCP leaves through (egress-upstream.ts); none: direct. */
  egressProxy?: EgressProxyConfig;
  /** Workload identity tokens (E2B `iam`, set at create only): `${e2b.identity.tokens.<name>}`. */
  identity?: SandboxIdentity;
}

/** What the kernel and the egress proxy enforce, derived from a SandboxNetwork. */
export interface EgressPolicy {
  allowCidrs: string[];
  denyCidrs: string[];
  allowDomains: string[];
  /** Domains whose HTTP and HTTPS the egress proxy intercepts to apply header transforms. */
  rules: TransformRules;
  /** Where every outbound TCP connection is tunnelled (after the checks above); none: direct. */
  upstream?: Upstream;
}

/** E2B's ALL_TRAFFIC (`src/sandbox/network.ts`): `allow_internet_access: false` means it. */
export const ALL_TRAFFIC = '0.0.0.0/0';

/** The envd port: its own token guards it, and E2B refuses to list it in httpsPorts. */
const ENVD_PORT = 49983;
const MAX_ENTRIES = 512;

export const OPEN_NETWORK: SandboxNetwork = {
  allowOut: [],
  denyOut: [],
  allowInternetAccess: true,
  allowPublicTraffic: true,
  httpsPorts: [],
};

/** The wire's fields, as the API's schema lets them through (types checked here). */
export interface NetworkInput {
  allowOut?: unknown;
  denyOut?: unknown;
  allowInternetAccess?: boolean | undefined;
  allowPublicTraffic?: unknown;
  maskRequestHost?: unknown;
  httpsPorts?: unknown;
  rules?: unknown;
  egressProxy?: unknown;
}

const bad = (message: string) => new CoveError('invalid_argument', message);

/**
 * Validates what a create or an update asks for; throws CoveError('invalid_argument') with a
 * message naming the field and the entry, before anything is changed. Upstream's rules
 * (infra `validateEgressRules`): denyOut takes addresses only, and domains in allowOut need
 * ALL_TRAFFIC in denyOut, since a domain can only be told apart by a proxy that sees the
 * connection, which only a sandbox whose other traffic is refused is sent through.
 */
export function parseNetwork(input: NetworkInput): SandboxNetwork {
  const allowOut = list(input.allowOut, 'allowOut').map(
    (e, i) => cidr(e) ?? domainPattern(e, `allowOut[${i}]`),
  );
  const denyOut = list(input.denyOut, 'denyOut').map((e, i) => {
    const c = cidr(e);
    if (c === undefined) {
      const hint = looksLikeDomain(e) ? ': domains can only be allowed (allowOut), not denied' : '';
      throw bad(`network.denyOut[${i}] "${clip(e)}" is not an IPv4 address or CIDR${hint}`);
    }
    return c;
  });
  const allowInternetAccess = input.allowInternetAccess ?? true;
  if (!allowInternetAccess && !denyOut.includes(ALL_TRAFFIC)) denyOut.push(ALL_TRAFFIC);
  if (allowOut.some(isDomain) && !denyOut.includes(ALL_TRAFFIC))
    throw bad(
      "network.allowOut names domains but denyOut lacks 0.0.0.0/0: when specifying allowed domains in allow out, you must include 'ALL_TRAFFIC' in deny out to block all other traffic",
    );
  if (input.allowPublicTraffic !== undefined && typeof input.allowPublicTraffic !== 'boolean')
    throw bad('network.allowPublicTraffic must be a boolean');
  const network: SandboxNetwork = {
    allowOut: unique(allowOut),
    denyOut: unique(denyOut),
    allowInternetAccess: allowInternetAccess && !denyOut.includes(ALL_TRAFFIC),
    allowPublicTraffic: input.allowPublicTraffic !== false,
    httpsPorts: ports(input.httpsPorts),
  };
  if (input.maskRequestHost !== undefined && input.maskRequestHost !== null)
    network.maskRequestHost = maskHost(input.maskRequestHost);
  const rules = parseRules(input.rules);
  if (Object.keys(rules).length > 0) network.rules = rules;
  const egressProxy = parseEgressProxy(input.egressProxy);
  if (egressProxy) network.egressProxy = egressProxy;
  return network;
}

/** What to enforce. Empty lists everywhere: nothing to enforce, the sandbox is open. */
export function egressPolicy(network: SandboxNetwork): EgressPolicy {
  return {
    allowCidrs: network.allowOut.filter((e) => !isDomain(e)),
    denyCidrs: network.denyOut,
    allowDomains: network.allowOut.filter(isDomain),
    rules: network.rules ?? {},
    ...(network.egressProxy && { upstream: upstreamOf(network.egressProxy) }),
  };
}

/**
 * Whether anything is restricted or rewritten (else no rules are installed for the sandbox):
 * a sandbox with header rules has its ports 80 and 443 sent through the egress proxy, one with
 * an upstream proxy all its TCP.
 */
export function restricts(policy: EgressPolicy): boolean {
  return policy.denyCidrs.length > 0 || Object.keys(policy.rules).length > 0 || policy.upstream !== undefined;
}

/**
 * Whether a host name (HTTP Host or TLS SNI) matches a pattern: equal, `*` (any name), or
 * `*.example.com` (any name under example.com, at any depth, not example.com itself: upstream's
 * MatchDomainPattern). Names compare case-insensitively, a trailing dot ignored.
 */
export function matchesDomain(hostname: string, pattern: string): boolean {
  const name = hostname.toLowerCase().replace(/\.$/, '');
  if (name === '' || name.startsWith('.')) return false;
  if (pattern === '*') return true;
  if (pattern.startsWith('*.')) return name.endsWith(pattern.slice(1));
  return name === pattern;
}

const isDomain = (entry: string) => !/^[\d./]+$/.test(entry);
const unique = (entries: string[]) => [...new Set(entries)];
const clip = (s: string) => (s.length > 80 ? `${s.slice(0, 80)}…` : s);

function list(value: unknown, field: string): string[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value) || value.some((e) => typeof e !== 'string'))
    throw bad(`network.${field} must be a list of strings`);
  if (value.length > MAX_ENTRIES) throw bad(`network.${field} has more than ${MAX_ENTRIES} entries`);
  return (value as string[]).map((e) => e.trim());
}

/**
 * An IPv4 address or CIDR, normalised (`1.2.3.4` → `1.2.3.4/32`, host bits cleared), or
 * undefined when the entry is no address at all. Throws for what looks like one but is not
 * valid, for IPv6 (sandboxes have none: nothing v6 leaves them) and for an unspecified
 * address other than 0.0.0.0/0 (upstream's IsSpecifiedIPOrCIDR).
 */
function cidr(entry: string): string | undefined {
  if (entry.includes(':'))
    throw bad(`"${clip(entry)}": IPv6 is not routed for sandboxes (they have no IPv6 address); use IPv4`);
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(entry);
  if (!m) {
    if (/^[\d./]+$/.test(entry)) throw bad(`"${clip(entry)}" is not a valid IPv4 address or CIDR`);
    return undefined;
  }
  const octets = m.slice(1, 5).map(Number);
  const prefix = m[5] === undefined ? 32 : Number(m[5]);
  if (octets.some((o) => o > 255) || prefix > 32)
    throw bad(`"${entry}" is not a valid IPv4 address or CIDR (octets 0-255, prefix 0-32)`);
  const value = octets.reduce((v, o) => v * 256 + o, 0);
  const mask = prefix === 0 ? 0 : 2 ** 32 - 2 ** (32 - prefix);
  const net = (value & mask) >>> 0;
  if (net === 0 && prefix !== 0) throw bad(`"${entry}": an unspecified address (0.0.0.0) names nothing`);
  const dotted = [net >>> 24, (net >>> 16) & 255, (net >>> 8) & 255, net & 255].join('.');
  return `${dotted}/${prefix}`;
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

function looksLikeDomain(entry: string): boolean {
  return /[a-z]/i.test(entry);
}

/** `example.com`, `*.example.com` or `*`, lowercased; anything else is refused. */
function domainPattern(entry: string, where: string): string {
  const d = entry.toLowerCase().replace(/\.$/, '');
  if (d === '*') return d;
  const name = d.startsWith('*.') ? d.slice(2) : d;
  const labels = name.split('.');
  if (
    name.length > 253 ||
    labels.length < 1 ||
    !labels.every((l) => LABEL.test(l)) ||
    /^\d+$/.test(labels.at(-1)!)
  )
    throw bad(
      `network.${where} "${clip(entry)}" is not an IPv4 address, CIDR or domain name (example.com, *.example.com)`,
    );
  return d;
}

function ports(value: unknown): number[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw bad('network.httpsPorts must be a list of ports');
  for (const p of value as unknown[]) {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 1 || p > 65535)
      throw bad(`network.httpsPorts: ${String(p)} is not a port (1-65535)`);
    if (p === ENVD_PORT) throw bad(`network.httpsPorts: the envd port ${ENVD_PORT} cannot be listed`);
  }
  return unique((value as number[]).map(String)).map(Number);
}

/** A host name with an optional port or `${PORT}`, ASCII, as upstream checks it. */
function maskHost(value: unknown): string {
  if (typeof value !== 'string') throw bad('network.maskRequestHost must be a string');
  const probe = value.replaceAll('${PORT}', '1');
  const m = /^([^:]+)(?::(\d{1,5}))?$/.exec(probe);
  const host = m?.[1]?.toLowerCase().replace(/\.$/, '') ?? '';
  if (!m || value.length > 255 || !host.split('.').every((l) => LABEL.test(l)) || Number(m[2] ?? 1) > 65535)
    throw bad(
      `network.maskRequestHost "${clip(value)}" is not valid: a host name, optionally with :port or :\${PORT}`,
    );
  return value;
}
