import type { IncomingMessage } from 'node:http';

/**
 * Headers that describe one connection, not the message (RFC 9110 §7.6.1, plus the de-facto
 * Proxy-Connection; the list of Go's httputil.ReverseProxy, which upstream E2B's proxy uses).
 * Node frames each side itself: it re-chunks bodies and keeps its own connections alive.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'transfer-encoding',
  'upgrade',
]);

/** Pairs of a raw header list (`[name, value, name, value, …]`, as Node's rawHeaders). */
function* pairs(raw: readonly string[]): Generator<[string, string]> {
  for (let i = 0; i + 1 < raw.length; i += 2) yield [raw[i]!, raw[i + 1]!];
}

/**
 * The end-to-end headers of a raw list, spelling, order and repeats kept: the hop-by-hop
 * ones go, with every header that a Connection header names. `TE: trailers` stays, as in
 * Go's proxy: it says the client accepts trailers, which the server may then send.
 */
export function endToEnd(raw: readonly string[]): string[] {
  const named = new Set<string>();
  for (const [name, value] of pairs(raw))
    if (name.toLowerCase() === 'connection')
      for (const token of value.split(',')) named.add(token.trim().toLowerCase());
  const out: string[] = [];
  for (const [name, value] of pairs(raw)) {
    const lower = name.toLowerCase();
    if (lower === 'te' && value.trim().toLowerCase() === 'trailers') out.push(name, value);
    else if (!HOP_BY_HOP.has(lower) && !named.has(lower)) out.push(name, value);
  }
  return out;
}

/** The client's address as X-Forwarded-For spells it (no IPv4-mapped IPv6 prefix). */
function clientAddress(req: IncomingMessage): string {
  const address = req.socket.remoteAddress ?? '';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/**
 * What goes to the server in the sandbox: the client's end-to-end headers with its Host kept
 * (a server that builds links sees the name the client used; upstream does the same), or
 * `opts.host` in its place (the sandbox's `maskRequestHost`), plus X-Forwarded-For (appended to what a proxy in
 * front of Cove said), -Host and -Proto (replaced: Cove is the edge that saw them). Expect goes
 * too: Node's server has already answered `100 Continue`, and the body is on its way. An
 * upgrade keeps its Connection and Upgrade headers, which ask the server to switch.
 */
export function requestHeaders(
  req: IncomingMessage,
  opts: { proto: 'http' | 'https'; upgrade?: boolean; host?: string | undefined },
): string[] {
  const out: string[] = [];
  const forwardedFor: string[] = [];
  const e2e = endToEnd(req.rawHeaders);
  for (let i = 0; i < e2e.length; i += 2) {
    const name = e2e[i]!;
    const lower = name.toLowerCase();
    if (lower === 'x-forwarded-for') forwardedFor.push(e2e[i + 1]!);
    else if (lower === 'host' && opts.host !== undefined) out.push(name, opts.host);
    else if (lower !== 'x-forwarded-host' && lower !== 'x-forwarded-proto' && lower !== 'expect')
      out.push(name, e2e[i + 1]!);
  }
  forwardedFor.push(clientAddress(req));
  out.push('X-Forwarded-For', forwardedFor.join(', '), 'X-Forwarded-Proto', opts.proto);
  if (req.headers.host !== undefined) out.push('X-Forwarded-Host', req.headers.host);
  // A body of unknown length stays chunked: without the header Node would send a GET's or
  // DELETE's body unframed.
  if (req.headers['transfer-encoding'] !== undefined) out.push('Transfer-Encoding', 'chunked');
  // Only for a request Node handed over as an upgrade: an `Upgrade` header without
  // `Connection: upgrade` is a plain request, and must not make the server switch.
  if (opts.upgrade && req.headers.upgrade !== undefined)
    out.push('Connection', 'Upgrade', 'Upgrade', req.headers.upgrade);
  return out;
}

/** The scheme the client used: `https` when the gateway's listener is the TLS one. */
export function protoOf(req: IncomingMessage): 'http' | 'https' {
  return 'encrypted' in req.socket && req.socket.encrypted ? 'https' : 'http';
}

/** Whether a request carries a body (RFC 9112 §6.3: only these two headers announce one). */
export function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** A raw list as an object for writeHead/addTrailers calls that take no arrays. */
export function trailerPairs(raw: readonly string[]): Array<[string, string]> {
  return [...pairs(raw)];
}
