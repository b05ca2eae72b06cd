import { randomUUID } from 'node:crypto';
import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * What is known about the request a piece of work serves: its id (for the logs), and the API
 * key that made it (for the audit trail). Carried by AsyncLocalStorage from the HTTP server's
 * request handler through the API, manager, runtime and agent calls it causes, so that every
 * log line and audit record made on its behalf names it without being passed by hand.
 */
export interface RequestContext {
  requestId: string;
  /** The id of the API key that authenticated the request (set by the API's key check). */
  keyId?: string;
}

const storage = new AsyncLocalStorage<RequestContext>();

/** The request the current code serves; undefined in background work (timers, pool fills). */
export function currentRequest(): RequestContext | undefined {
  return storage.getStore();
}

/**
 * A caller's `X-Request-Id` is kept when it is short and plain (so that a proxy's id links
 * its logs with ours); anything else is replaced: it ends up in log lines and the audit trail.
 */
export function requestIdFrom(header: string | string[] | undefined): string {
  return typeof header === 'string' && /^[A-Za-z0-9._:-]{1,128}$/.test(header) ? header : randomUUID();
}

export function runInRequest<T>(context: RequestContext, fn: () => T): T {
  return storage.run(context, fn);
}

/**
 * Runs `fn` outside any request: work it starts (a timer, a background refill) must not be
 * attributed to the request that happened to schedule it.
 */
export function outsideRequest<T>(fn: () => T): T {
  return storage.exit(fn);
}
