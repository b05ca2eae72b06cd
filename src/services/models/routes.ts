import { Hono, type Context } from 'hono';
import { CoveError, httpStatus } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { ServicesEnv } from '../env.ts';
import { readJson } from '../body.ts';
import type { Quotas } from '../quotas.ts';
import type { Usage } from '../usage.ts';
import type { ModelMap } from './providers.ts';
import { meterStream, usageOf, type Tokens } from './stream-usage.ts';
import { callUpstream, type UpstreamOptions } from './upstream.ts';

export interface ModelDeps {
  models: ModelMap;
  usage: Usage;
  quotas: Quotas;
  log: Logger;
  upstream: UpstreamOptions;
  maxRequestBytes: number;
}

/** Response headers passed back: the format, and what helps a client debug or pace itself. */
const FORWARDED_RESPONSE =
  /^(content-type|cache-control|retry-after|x-request-id|request-id|openai-.*|anthropic-.*|x-ratelimit-.*)$/i;

/**
 * OpenAI's /v1/chat/completions, /v1/embeddings and /v1/models, and Anthropic's /v1/messages,
 * forwarded to the operator's providers. Streams pass through chunk by chunk; usage is read on
 * the way (streamed included) and written to the ledger when the call ends.
 */
export function modelRoutes(deps: ModelDeps): Hono<ServicesEnv> {
  const app = new Hono<ServicesEnv>();

  app.get('/v1/models', (c) =>
    c.json({
      object: 'list',
      data: deps.models
        .models()
        .map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.provider.name })),
    }),
  );

  const forward = async (c: Context<ServicesEnv>, path: string, api: 'openai' | 'anthropic') => {
    const who = c.get('principal');
    const body = await readJson(c, deps.maxRequestBytes);
    const provider = deps.models.resolve(body.model, api);
    const model = body.model as string;
    deps.quotas.admit(who, { tokens: true });
    const stream = body.stream === true;
    // OpenAI streams report usage only when asked: ask, so that the call can be counted.
    if (stream && api === 'openai' && path === '/chat/completions') {
      const so = (body.stream_options ?? {}) as Record<string, unknown>;
      if (typeof so === 'object') body.stream_options = { ...so, include_usage: true };
    }
    const started = Date.now();
    const record = (tokens: Tokens | undefined, status: number) => {
      deps.usage.record({
        at: started,
        keyId: who.keyId,
        ...(who.sandboxId && { sandboxId: who.sandboxId }),
        service: 'models',
        model,
        provider: provider.name,
        inputTokens: tokens?.input ?? 0,
        outputTokens: tokens?.output ?? 0,
        status,
      });
    };
    let res: Response;
    try {
      res = await callUpstream(provider, path, JSON.stringify(body), c.req.raw.headers, {
        ...deps.upstream,
        signal: c.req.raw.signal,
      });
    } catch (err) {
      record(undefined, err instanceof CoveError ? httpStatus[err.code] : 500);
      throw err;
    }
    const headers = new Headers();
    res.headers.forEach((v, k) => {
      if (FORWARDED_RESPONSE.test(k)) headers.set(k, v);
    });
    if (!res.ok || !stream || !res.body) {
      // Not streamed (or refused): small, read whole for its usage. A 4xx is the caller's
      // request as the provider judged it: its body and status go back as they are.
      const bytes = new Uint8Array(await res.arrayBuffer());
      let tokens: Tokens | undefined;
      try {
        tokens = usageOf(JSON.parse(new TextDecoder().decode(bytes)));
      } catch {
        tokens = undefined;
      }
      record(tokens, res.status);
      return new Response(bytes, { status: res.status, headers });
    }
    headers.set('cache-control', 'no-cache');
    headers.set('x-accel-buffering', 'no');
    const metered = res.body.pipeThrough(meterStream((tokens) => record(tokens, res.status)));
    return new Response(metered, { status: res.status, headers });
  };

  app.post('/v1/chat/completions', (c) => forward(c, '/chat/completions', 'openai'));
  app.post('/v1/embeddings', (c) => forward(c, '/embeddings', 'openai'));
  app.post('/v1/messages', (c) => forward(c, '/v1/messages', 'anthropic'));
  return app;
}
