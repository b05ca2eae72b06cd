import { Hono } from 'hono';
import { CoveError } from '../core/errors.ts';
import type { SandboxInfo } from '../manager/manager.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { listedSandbox } from './wire.ts';

type WireState = 'running' | 'paused';

export interface ListQuery {
  metadata: Record<string, string>;
  states: Set<WireState>;
  startedAfter?: number;
  template?: string;
  order: 'asc' | 'desc';
  limit: number;
  after?: Cursor;
}

/** Where the previous page ended: the last sandbox's start time and id (ids break ties). */
interface Cursor {
  startedAt: number;
  id: string;
}

const invalid = (message: string) => new CoveError('invalid_argument', message);

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw invalid(`${what} is not valid percent-encoding`);
  }
}

/**
 * The `metadata` filter, decoded as the SDK encodes it (spec 2.6): each key and value is
 * percent-encoded, the pairs are joined like a query string, and the whole is encoded again
 * as one query value. After the query's own decoding this undoes the outer layer, then each
 * key and value; decodeURIComponent, not URLSearchParams, so that a `+` stays a `+`.
 */
export function decodeMetadataFilter(value: string): Record<string, string> {
  const filter: Record<string, string> = {};
  const pairs = decode(value, 'metadata');
  for (const pair of pairs.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw invalid(`metadata: expected key=value, got ${JSON.stringify(pair)}`);
    filter[decode(pair.slice(0, eq), 'metadata')] = decode(pair.slice(eq + 1), 'metadata');
  }
  return filter;
}

/** The opaque `X-Next-Token`: base64url of the cursor, so that clients treat it as a blob. */
export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify([c.startedAt, c.id])).toString('base64url');
}

function decodeCursor(token: string): Cursor {
  try {
    const value: unknown = JSON.parse(Buffer.from(token, 'base64url').toString('utf8'));
    if (
      Array.isArray(value) &&
      value.length === 2 &&
      Number.isSafeInteger(value[0]) &&
      typeof value[1] === 'string' &&
      /^[a-z0-9]{1,64}$/.test(value[1])
    )
      return { startedAt: value[0] as number, id: value[1] };
  } catch {
    // not base64 of JSON: answered below
  }
  throw invalid('Invalid next token');
}

/** Parses the v2 list query (spec 2.6); every bad value is a 400 that names it. */
export function parseListQuery(q: (name: string) => string | undefined): ListQuery {
  const states = new Set<WireState>();
  for (const s of (q('state') ?? 'running,paused').split(',')) {
    if (s !== 'running' && s !== 'paused')
      throw invalid(`state: ${JSON.stringify(s)} is not running or paused`);
    states.add(s);
  }
  const query: ListQuery = {
    metadata: q('metadata') ? decodeMetadataFilter(q('metadata')!) : {},
    states,
    order: 'desc',
    limit: 100,
  };
  const startedAfter = q('startedAfter');
  if (startedAfter !== undefined) {
    const t = Date.parse(startedAfter);
    if (Number.isNaN(t)) throw invalid('startedAfter: expected an RFC 3339 time');
    query.startedAfter = t;
  }
  const template = q('template');
  if (template) {
    if (template.includes(':')) throw invalid('template: filter by a template name without a :tag');
    query.template = template;
  }
  const order = q('order');
  if (order !== undefined) {
    if (order !== 'asc' && order !== 'desc') throw invalid('order: expected asc or desc');
    query.order = order;
  }
  const limit = q('limit');
  if (limit !== undefined) {
    const n = Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > 100) throw invalid('limit: expected an integer from 1 to 100');
    query.limit = n;
  }
  const token = q('nextToken');
  if (token) query.after = decodeCursor(token);
  return query;
}

const wireState = (s: SandboxInfo): WireState => (s.state === 'paused' ? 'paused' : 'running');

/**
 * One page: filter, order the whole result by start time (ties by id, so that pages never
 * repeat or skip one), then take `limit` after the cursor. A cursor survives sandboxes
 * coming and going between pages, as an offset would not.
 */
export function listPage(all: SandboxInfo[], q: ListQuery) {
  const matching = all.filter(
    (s) =>
      q.states.has(wireState(s)) &&
      (q.startedAfter === undefined || s.startedAt.getTime() >= q.startedAfter) &&
      (q.template === undefined || s.templateName === q.template) &&
      Object.entries(q.metadata).every(([k, v]) => s.metadata[k] === v),
  );
  const sign = q.order === 'asc' ? 1 : -1;
  const compare = (a: Cursor, b: Cursor) =>
    sign * (a.startedAt - b.startedAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  const key = (s: SandboxInfo): Cursor => ({ startedAt: s.startedAt.getTime(), id: s.id });
  matching.sort((a, b) => compare(key(a), key(b)));
  const rest = q.after ? matching.filter((s) => compare(key(s), q.after!) > 0) : matching;
  const items = rest.slice(0, q.limit);
  const last = items.at(-1);
  return {
    items,
    totalRunning: matching.filter((s) => wireState(s) === 'running').length,
    ...(rest.length > items.length && last && { nextToken: encodeCursor(key(last)) }),
  };
}

/** `GET /v2/sandboxes` and the deprecated v1 `GET /sandboxes` (running only, metadata only). */
export function listRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  // A sandbox still starting has no id anyone was given: it is not listed yet.
  const listable = () => deps.manager.list().filter((s) => s.state !== 'starting');

  app.get('/v2/sandboxes', (c) => {
    const query = parseListQuery((name) => c.req.query(name));
    const page = listPage(listable(), query);
    const diskSizeMB = deps.diskSizeMB();
    c.header('X-Total-Running', String(page.totalRunning));
    if (page.nextToken) c.header('X-Next-Token', page.nextToken);
    return c.json(page.items.map((s) => listedSandbox(s, diskSizeMB)));
  });

  app.get('/sandboxes', (c) => {
    const metadata = c.req.query('metadata');
    const page = listPage(listable(), {
      metadata: metadata ? decodeMetadataFilter(metadata) : {},
      states: new Set(['running']),
      order: 'desc',
      limit: Number.MAX_SAFE_INTEGER,
    });
    const diskSizeMB = deps.diskSizeMB();
    return c.json(page.items.map((s) => listedSandbox(s, diskSizeMB)));
  });

  return app;
}
