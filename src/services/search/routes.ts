import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { CoveError, httpStatus } from '../../core/errors.ts';
import { parseAs } from '../../core/schema.ts';
import { readJson } from '../body.ts';
import type { ServicesEnv } from '../env.ts';
import type { Quotas } from '../quotas.ts';
import type { Usage } from '../usage.ts';

export interface SearchDeps {
  provider?: { url: string; apiKey?: string };
  quotas: Quotas;
  usage: Usage;
  timeoutMs: number;
}

const request = z
  .object({
    query: z.string().min(1).max(2000),
    limit: z.number().int().min(1).max(100).optional(),
    page: z.number().int().min(1).max(50).optional(),
    categories: z.string().max(200).optional(),
    language: z.string().max(20).optional(),
    timeRange: z.enum(['day', 'week', 'month', 'year']).optional(),
  })
  .strict();

interface SearxResult {
  title?: unknown;
  url?: unknown;
  content?: unknown;
  engine?: unknown;
  publishedDate?: unknown;
}

/**
 * `POST /v1/search {query, limit?, page?, categories?, language?, timeRange?}` (or
 * `GET /v1/search?q=`): forwarded to the operator's SearXNG-compatible JSON API
 * (`<url>?q=…&format=json`), under the same tokens and request quotas as the model gateway.
 * The answer is normalised: `{query, results: [{title, url, content, engine}], answers, suggestions}`.
 */
export function searchRoutes(deps: SearchDeps): Hono<ServicesEnv> {
  const app = new Hono<ServicesEnv>();

  const search = async (c: Context<ServicesEnv>, input: z.infer<typeof request>) => {
    if (!deps.provider)
      throw new CoveError('unavailable', 'no search provider configured (services.json: search.url)');
    const who = c.get('principal');
    deps.quotas.admit(who, { tokens: false });
    const url = new URL(deps.provider.url);
    url.searchParams.set('q', input.query);
    url.searchParams.set('format', 'json');
    if (input.page) url.searchParams.set('pageno', String(input.page));
    if (input.categories) url.searchParams.set('categories', input.categories);
    if (input.language) url.searchParams.set('language', input.language);
    if (input.timeRange) url.searchParams.set('time_range', input.timeRange);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (deps.provider.apiKey) headers.authorization = `Bearer ${deps.provider.apiKey}`;
    let status = 0;
    try {
      const res = await fetch(url, {
        headers,
        signal: AbortSignal.any([AbortSignal.timeout(deps.timeoutMs), c.req.raw.signal]),
      }).catch((err: unknown) => {
        const timedOut = (err as Error).name === 'TimeoutError';
        throw new CoveError(
          timedOut ? 'deadline_exceeded' : 'unavailable',
          timedOut
            ? `search provider did not answer within ${deps.timeoutMs} ms`
            : `search provider is unreachable: ${(err as { cause?: { code?: string } }).cause?.code ?? String(err)}`,
          { cause: err },
        );
      });
      status = res.status;
      if (!res.ok)
        throw new CoveError(
          res.status === 429 ? 'resource_exhausted' : 'unavailable',
          `search provider failed (${res.status}): ${(await res.text()).slice(0, 200)}`,
        );
      const json = (await res.json().catch(() => {
        throw new CoveError(
          'unavailable',
          'search provider answered with something other than JSON (is format=json enabled?)',
        );
      })) as { results?: SearxResult[]; answers?: unknown[]; suggestions?: unknown[] };
      const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
      const results = (Array.isArray(json.results) ? json.results : [])
        .slice(0, input.limit ?? 10)
        .map((r) => ({
          title: str(r.title) ?? '',
          url: str(r.url) ?? '',
          content: str(r.content) ?? '',
          ...(str(r.engine) && { engine: str(r.engine) }),
          ...(str(r.publishedDate) && { publishedDate: str(r.publishedDate) }),
        }));
      return c.json({
        query: input.query,
        results,
        answers: Array.isArray(json.answers) ? json.answers : [],
        suggestions: Array.isArray(json.suggestions) ? json.suggestions : [],
      });
    } catch (err) {
      if (!status && err instanceof CoveError) status = httpStatus[err.code];
      throw err;
    } finally {
      deps.usage.record({
        at: Date.now(),
        keyId: who.keyId,
        ...(who.sandboxId && { sandboxId: who.sandboxId }),
        service: 'search',
        inputTokens: 0,
        outputTokens: 0,
        status,
      });
    }
  };

  app.post('/v1/search', async (c) => {
    return search(c, parseAs(request, await readJson(c, 64 * 1024)));
  });
  app.get('/v1/search', (c) => {
    const q = c.req.query('q');
    if (!q) throw new CoveError('invalid_argument', 'q: the search query is required');
    return search(c, { query: q.slice(0, 2000) });
  });
  return app;
}
