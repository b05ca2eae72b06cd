import type { IncomingHttpHeaders } from 'node:http';

/** Where one request goes: the control API, or port `port` of sandbox `sandboxId`. */
export type Target = { kind: 'api' } | { kind: 'sandbox'; sandboxId: string; port: number };

const SANDBOX_ID = /^[a-z0-9]{1,64}$/;

/**
 * Demultiplexes the one port (spec 1.3 and 1.5, as upstream's proxy/host.go does): the
 * `E2b-Sandbox-Id` and `E2b-Sandbox-Port` headers name a sandbox port; so does a host name
 * `<port>-<id>.<domain>`. Everything else is the control API.
 */
export function routeOf(headers: IncomingHttpHeaders): Target {
  const id = headers['e2b-sandbox-id'];
  const port = headers['e2b-sandbox-port'];
  if (typeof id === 'string' && typeof port === 'string') {
    const n = Number(port);
    if (SANDBOX_ID.test(id) && Number.isInteger(n) && n > 0 && n < 65536)
      return { kind: 'sandbox', sandboxId: id, port: n };
  }
  const host = (headers.host ?? '').split(':')[0] ?? '';
  const m = /^(\d{1,5})-([a-z0-9]{1,64})\./.exec(host);
  if (m) {
    const n = Number(m[1]);
    if (n > 0 && n < 65536) return { kind: 'sandbox', sandboxId: m[2]!, port: n };
  }
  return { kind: 'api' };
}
