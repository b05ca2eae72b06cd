import type { IncomingHttpHeaders } from 'node:http';

/**
 * Where one request goes: the control API; port `port` of sandbox `sandboxId`; a signed
 * `/files` URL, whose sandbox only its signature tells (spec 1.5 step 3); or nowhere, with
 * the reason (a 400, as upstream's MissingHeaderError).
 */
export type Target =
  | { kind: 'api' }
  | { kind: 'sandbox'; sandboxId: string; port: number }
  | { kind: 'signed-files' }
  | { kind: 'invalid'; message: string };

/** Upstream's sandbox id rule (infra shared/pkg/id): Cove's own ids are 20 of these. */
const SANDBOX_ID = /^[a-z0-9]{1,64}$/;

function port(text: string): number | undefined {
  const n = Number(text);
  return /^\d{1,5}$/.test(text) && n > 0 && n < 65536 ? n : undefined;
}

const badPort = (text: string, where: string) =>
  `Invalid sandbox port "${text.slice(0, 16)}" in ${where}: a port is a number from 1 to 65535`;

/** The Host header's name without its port, lowercased (`[::1]:3000` → `[::1]`). */
export function hostName(host: string | undefined): string {
  const h = (host ?? '').trim().toLowerCase();
  return h.startsWith('[') ? h.slice(0, h.indexOf(']') + 1) : (h.split(':')[0] ?? '');
}

// Any number of digits, so that `70000-<id>.<domain>` is a clear 400 rather than an API 404.
const ANY_DOMAIN = /^(\d+)-([a-z0-9]{1,64})\.[^.]/;
const hostPatterns = new Map<string, RegExp>();

/**
 * `<port>-<id>.<domain>` for one domain, compiled once (routeOf runs for every request). A
 * domain may name a port (`localhost:3000`, so that getHost() URLs reach a server that is not
 * on port 80); only its name is matched, as Host headers are compared without their port.
 */
function hostPattern(domain: string | undefined): RegExp {
  if (!domain) return ANY_DOMAIN;
  let pattern = hostPatterns.get(domain);
  if (!pattern) {
    const escaped = hostName(domain).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    hostPatterns.set(domain, (pattern = new RegExp(`^(\\d+)-([a-z0-9]{1,64})\\.${escaped}$`)));
  }
  return pattern;
}

/**
 * Demultiplexes the one port (spec 1.3 and 1.5), in this order:
 * 1. A host `<port>-<id>.<domain>` names the sandbox port, whatever the headers say, as in
 *    upstream's proxy (host.go). With COVE_DOMAIN set only that domain counts; without it,
 *    any name that starts with `<port>-<id>.` does (wildcard DNS for some domain points here).
 *    A port outside 1-65535, in the host or the header, is a 400 that says so.
 * 2. Otherwise `E2b-Sandbox-Id` with `E2b-Sandbox-Port` name it; one without the other is a
 *    400. Upstream honours these headers only when the host is localhost, an IP literal or
 *    `sandbox.<domain>`; Cove honours them under any other host name too, because its API and
 *    gateway share one port that users reach by whatever name the machine has
 *    (E2B_SANDBOX_URL=http://cove.lan:3000): a stricter rule would only break them.
 * 3. Otherwise `/files` with a `signature` query is a signed download or upload URL, which
 *    carries no sandbox identity when E2B_SANDBOX_URL is set.
 * 4. Everything else is the control API.
 */
export function routeOf(
  req: { headers: IncomingHttpHeaders; url?: string | undefined },
  domain?: string,
): Target {
  const host = hostName(req.headers.host);
  const m = hostPattern(domain).exec(host);
  if (m) {
    const n = port(m[1]!);
    if (n === undefined) return { kind: 'invalid', message: badPort(m[1]!, `host ${host}`) };
    return { kind: 'sandbox', sandboxId: m[2]!, port: n };
  }

  const id = req.headers['e2b-sandbox-id'];
  const portHeader = req.headers['e2b-sandbox-port'];
  if (id !== undefined || portHeader !== undefined) {
    if (id === undefined) return { kind: 'invalid', message: 'Missing header: E2b-Sandbox-Id' };
    if (portHeader === undefined) return { kind: 'invalid', message: 'Missing header: E2b-Sandbox-Port' };
    const n = typeof portHeader === 'string' ? port(portHeader) : undefined;
    if (n === undefined)
      return { kind: 'invalid', message: badPort(String(portHeader), 'header E2b-Sandbox-Port') };
    if (typeof id !== 'string' || !SANDBOX_ID.test(id))
      return { kind: 'invalid', message: 'Invalid header: E2b-Sandbox-Id' };
    return { kind: 'sandbox', sandboxId: id, port: n };
  }

  const url = new URL(req.url ?? '/', 'http://gateway');
  if (url.pathname === '/files' && url.searchParams.has('signature')) return { kind: 'signed-files' };
  return { kind: 'api' };
}
