import { Hono, type MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { MAX_QUERY_LIMIT, type AuditQuery } from '../audit/store.ts';
import type { Audit } from '../audit/index.ts';
import { CoveError } from '../core/errors.ts';
import { isSandboxId } from '../core/ids.ts';
import { currentRequest, requestIdFrom, runInRequest } from '../core/request-context.ts';
import type { Prometheus } from '../metrics/prometheus.ts';
import type { ApiEnv } from './auth.ts';

/** Requests that change something, and refusals of a key: the API calls the trail keeps. */
const recorded = (method: string, status: number) =>
  (method !== 'GET' && method !== 'HEAD') || status === 401 || status === 403;

/**
 * First of every API request: it runs in a request context (made here when the HTTP server
 * made none, as under app.fetch in tests) whose id answers in `X-Request-Id`; once the route
 * answered, the call is counted for /metrics and, when it changes something (or a key was
 * refused), recorded in the audit trail, before the response leaves (key id, route, method,
 * status, outcome).
 */
export function observeApiCalls(deps: { audit?: Audit; prometheus?: Prometheus }): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const context = currentRequest() ?? { requestId: requestIdFrom(c.req.header('x-request-id')) };
    await runInRequest(context, next);
    c.res.headers.set('x-request-id', context.requestId);
    const route = routePath(c);
    const status = c.res.status;
    const code = c.error instanceof CoveError ? c.error.code : c.error ? 'internal' : undefined;
    deps.prometheus?.observeRequest({
      route: route === '*' ? 'unmatched' : route,
      method: c.req.method,
      status,
      ...(code && { code }),
    });
    if (!deps.audit || !recorded(c.req.method, status)) return;
    const id = /\/sandboxes\/([^/]+)/.exec(c.req.path)?.[1];
    deps.audit.record({
      sandboxId: id !== undefined && isSandboxId(id) ? id : null,
      action: 'api',
      outcome: code ?? (status < 400 ? 'ok' : String(status)),
      keyId: context.keyId ?? null,
      requestId: context.requestId,
      fields: { method: c.req.method, route, path: c.req.path.slice(0, 512), status },
    });
  };
}

function time(value: string | undefined, name: string): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isSafeInteger(n) || n < 0)
    throw new CoveError('invalid_argument', `${name}: expected epoch milliseconds or an ISO 8601 time`);
  return n;
}

function count(value: string | undefined, name: string, max: number): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > max)
    throw new CoveError('invalid_argument', `${name}: expected an integer from 0 to ${max}`);
  return n;
}

/**
 * `GET /cove/v1/audit`: the audit trail, oldest first, filtered by `sandbox`, `key`, `action`
 * (a prefix), `since`/`until` (epoch ms or ISO 8601, inclusive), paged by `after` (the reply's
 * `next`). `format=jsonl` exports everything that matches as JSON lines, streamed page by page.
 * Behind the API key like every route, and scoped to it: the records of the sandboxes the key
 * created, those the key made itself, and keyless ones of no key's sandbox (refused keys). 404 when the audit trail is off (COVE_AUDIT=off).
 */
export function auditRoutes(deps: { audit?: Audit }): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.get('/cove/v1/audit', (c) => {
    const store = deps.audit?.store;
    if (!store) throw new CoveError('not_found', 'the audit trail is off (COVE_AUDIT=off)');
    const sandbox = c.req.query('sandbox');
    const key = c.req.query('key');
    const action = c.req.query('action');
    for (const [name, v] of [
      ['sandbox', sandbox],
      ['key', key],
      ['action', action],
    ] as const)
      if (v !== undefined && (v.length > 128 || !/^[\w.-]*$/.test(v)))
        throw new CoveError('invalid_argument', `${name}: at most 128 letters, digits, '.', '_' or '-'`);
    // A key reads its own sandboxes' trail and its own calls, not other keys' work.
    const q: AuditQuery = {
      visibleTo: c.get('keyId'),
      ...(sandbox && { sandboxId: sandbox }),
      ...(key && { keyId: key }),
      ...(action && { action }),
    };
    const since = time(c.req.query('since'), 'since');
    const until = time(c.req.query('until'), 'until');
    const after = count(c.req.query('after'), 'after', Number.MAX_SAFE_INTEGER);
    if (since !== undefined) q.since = since;
    if (until !== undefined) q.until = until;
    if (after !== undefined) q.after = after;
    const format = c.req.query('format') ?? 'json';
    if (format === 'json') {
      const limit = count(c.req.query('limit'), 'limit', MAX_QUERY_LIMIT);
      const page = store.query({ ...q, ...(limit !== undefined && { limit }) });
      return c.json({
        events: page.events,
        ...(page.next !== undefined && { next: page.next }),
        ...(q.sandboxId &&
          (store.ownerOf(q.sandboxId) ?? q.visibleTo) === q.visibleTo && {
            dropped: store.dropped(q.sandboxId),
          }),
      });
    }
    if (format !== 'jsonl') throw new CoveError('invalid_argument', 'format: expected json or jsonl');
    // Page by page, so that an export of a large trail never sits whole in memory.
    const body = new ReadableStream<Uint8Array>({
      start() {},
      pull(controller) {
        const page = store.query(q);
        if (page.events.length > 0)
          controller.enqueue(Buffer.from(page.events.map((e) => JSON.stringify(e)).join('\n') + '\n'));
        if (page.next === undefined) controller.close();
        else q.after = page.next;
      },
    });
    return c.body(body, 200, { 'content-type': 'application/x-ndjson' });
  });

  return app;
}
