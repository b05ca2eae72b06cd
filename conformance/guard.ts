/**
 * A vitest setup file for the conformance run: only this machine is reachable. A test that
 * builds an E2B cloud URL (getHost() is `<port>-<id>.e2b.app` unless E2B_DOMAIN says otherwise)
 * fails at once with a clear message instead of sending anything off the machine.
 */
import dns from 'node:dns';

const LOCAL = new Set(['localhost', '127.0.0.1', '::1', '[::1]']);

function blocked(host: string): Error {
  return Object.assign(
    new Error(`conformance: blocked ${host}: only this machine is reachable in a conformance run`),
    { code: 'ENOTFOUND', hostname: host },
  );
}

const realFetch = globalThis.fetch;
globalThis.fetch = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
  const url = new URL(input instanceof Request ? input.url : String(input));
  if (!LOCAL.has(url.hostname))
    return Promise.reject(new TypeError('fetch failed', { cause: blocked(url.host) }));
  return realFetch(input, init);
};

// Everything else that resolves a name (undici, net, http) goes through dns.lookup.
const realLookup = dns.lookup;
dns.lookup = ((hostname: string, ...rest: unknown[]) => {
  const callback = rest.at(-1) as (err: Error | null) => void;
  if (!LOCAL.has(hostname) && !/^[\d.]+$/.test(hostname) && !hostname.includes(':')) {
    process.nextTick(() => callback(blocked(hostname)));
    return;
  }
  return (realLookup as (...args: unknown[]) => void)(hostname, ...rest);
}) as typeof dns.lookup;
const realPromiseLookup = dns.promises.lookup;
dns.promises.lookup = ((hostname: string, ...rest: unknown[]) => {
  if (!LOCAL.has(hostname) && !/^[\d.]+$/.test(hostname) && !hostname.includes(':'))
    return Promise.reject(blocked(hostname));
  return (realPromiseLookup as (...args: unknown[]) => Promise<unknown>)(hostname, ...rest);
}) as typeof dns.promises.lookup;
