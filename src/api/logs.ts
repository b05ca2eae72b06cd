import { Hono } from 'hono';
import { logLevels, type LogLevel, type SandboxLogEntry } from '../audit/sandbox-log.ts';
import { CoveError } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { sandboxId } from './validate.ts';

const MAX_LIMIT = 1000;

function integer(value: string | undefined, name: string, max = Number.MAX_SAFE_INTEGER): number | undefined {
  if (value === undefined || value === '') return undefined;
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 0 || n > max)
    throw new CoveError('invalid_argument', `${name}: expected an integer from 0 to ${max}`);
  return n;
}

const entry = (e: SandboxLogEntry) => ({
  timestamp: new Date(e.timestamp).toISOString(),
  level: e.level,
  message: e.message,
  fields: e.fields,
});

/**
 * A sandbox's log (spec 2.13), from src/audit: its lifecycle and its runtime's stderr. Not
 * used by the JS SDK; E2B's CLI reads v1. A stopped sandbox's log stays readable for a while.
 */
export function logRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  function entriesOf(id: string): SandboxLogEntry[] {
    const entries = deps.sandboxLog.entries(id);
    if (entries) return entries;
    deps.manager.get(id); // 404 unless it runs (nothing logged for it yet)
    return [];
  }

  // v1: `start` in epoch ms, oldest first; both the plain lines and the structured entries.
  app.get('/sandboxes/:id/logs', (c) => {
    const entries = entriesOf(sandboxId(c));
    const start = integer(c.req.query('start'), 'start') ?? 0;
    const limit = integer(c.req.query('limit'), 'limit', MAX_LIMIT) ?? MAX_LIMIT;
    const page = entries.filter((e) => e.timestamp >= start).slice(0, limit);
    return c.json({
      logs: page.map((e) => ({ timestamp: new Date(e.timestamp).toISOString(), line: e.message })),
      logEntries: page.map(entry),
    });
  });

  // v2: from `cursor` (epoch ms) forward, oldest first, or backward, newest first; `level` is
  // the lowest level returned, `search` a case-sensitive substring of the message.
  app.get('/v2/sandboxes/:id/logs', (c) => {
    const entries = entriesOf(sandboxId(c));
    const cursor = integer(c.req.query('cursor'), 'cursor');
    const limit = integer(c.req.query('limit'), 'limit', MAX_LIMIT) ?? MAX_LIMIT;
    const direction = c.req.query('direction') ?? 'forward';
    if (direction !== 'forward' && direction !== 'backward')
      throw new CoveError('invalid_argument', 'direction: expected forward or backward');
    const level = (c.req.query('level') ?? 'debug') as LogLevel;
    if (!logLevels.includes(level))
      throw new CoveError('invalid_argument', `level: expected one of ${logLevels.join(', ')}`);
    const search = c.req.query('search');
    if (search !== undefined && search.length > 256)
      throw new CoveError('invalid_argument', 'search: at most 256 characters');
    const minLevel = logLevels.indexOf(level);
    const matching = entries.filter(
      (e) =>
        logLevels.indexOf(e.level) >= minLevel &&
        (search === undefined || e.message.includes(search)) &&
        (cursor === undefined || (direction === 'forward' ? e.timestamp >= cursor : e.timestamp <= cursor)),
    );
    const ordered = direction === 'forward' ? matching : matching.reverse();
    return c.json({ logs: ordered.slice(0, limit).map(entry) });
  });

  return app;
}
