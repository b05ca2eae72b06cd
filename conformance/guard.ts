/**
 * A vitest setup file for the conformance run: only this machine is reachable. A test that
 * builds an E2B cloud URL (getHost() is `<port>-<id>.e2b.app` when the server names no domain)
 * fails at once with a clear message instead of sending anything off the machine. Names under
 * `localhost` resolve to the loopback, as RFC 6761 has it and curl and browsers do (Node asks
 * the system resolver, which usually does not): Cove's create reply names `cove.localhost:<port>`
 * as the sandbox domain, so getHost() reaches Cove's gateway.
 */
import dns from 'node:dns';

const LOCAL = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);
const isLocal = (host: string) => LOCAL.has(host) || host.endsWith('.localhost');
/** Not a name to resolve: an IPv4 or IPv6 literal. */
const isAddress = (host: string) => /^[\d.]+$/.test(host) || host.includes(':');

function blocked(host: string): Error {
  return Object.assign(
    new Error(`conformance: blocked ${host}: only this machine is reachable in a conformance run`),
    { code: 'ENOTFOUND', hostname: host },
  );
}

const realFetch = globalThis.fetch;
globalThis.fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (!isLocal(url.hostname))
    return Promise.reject(new TypeError('fetch failed', { cause: blocked(url.host) }));
  return realFetch(input, init);
};

// Everything else that resolves a name (undici, net, http) goes through dns.lookup.
type Callback = (err: Error | null, address?: string | dns.LookupAddress[], family?: number) => void;
const realLookup = dns.lookup;
dns.lookup = ((hostname: string, ...rest: unknown[]) => {
  const callback = rest.at(-1) as Callback;
  const all = typeof rest[0] === 'object' && rest[0] !== null && (rest[0] as dns.LookupOptions).all === true;
  if (hostname.endsWith('.localhost')) {
    process.nextTick(() =>
      all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4),
    );
    return;
  }
  if (!isLocal(hostname) && !isAddress(hostname)) {
    process.nextTick(() => callback(blocked(hostname)));
    return;
  }
  return (realLookup as (...args: unknown[]) => void)(hostname, ...rest);
}) as typeof dns.lookup;
const realPromiseLookup = dns.promises.lookup;
dns.promises.lookup = ((hostname: string, ...rest: unknown[]) => {
  if (hostname.endsWith('.localhost')) {
    const all =
      typeof rest[0] === 'object' && rest[0] !== null && (rest[0] as dns.LookupOptions).all === true;
    return Promise.resolve(all ? [{ address: '127.0.0.1', family: 4 }] : { address: '127.0.0.1', family: 4 });
  }
  if (!isLocal(hostname) && !isAddress(hostname)) return Promise.reject(blocked(hostname));
  return (realPromiseLookup as (...args: unknown[]) => Promise<unknown>)(hostname, ...rest);
}) as typeof dns.promises.lookup;
