import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { Hono, type MiddlewareHandler } from 'hono';
import { CoveError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { loadServicesConfig, providers, type ServicesConfig } from './config.ts';
import { openServicesDb } from './db.ts';
import type { ServicesEnv } from './env.ts';
import { servicesErrorHandler } from './errors.ts';
import { memoryRoutes } from './memory/routes.ts';
import { createMemory } from './memory/store.ts';
import { createModelMap } from './models/providers.ts';
import { modelRoutes } from './models/routes.ts';
import { callUpstream } from './models/upstream.ts';
import { createQuotas } from './quotas.ts';
import { searchRoutes } from './search/routes.ts';
import { createTokens, loadSecret } from './tokens.ts';
import { createUsage } from './usage.ts';

export interface ServicesOptions {
  home: string;
  /** COVE_SERVICES_CONFIG; default `<home>/services.json`. */
  configPath?: string;
  /** Given directly (tests), instead of the file. */
  config?: ServicesConfig;
  log: Logger;
  /** Whether a sandbox is alive: a token dies with its sandbox. */
  sandboxAlive: (id: string) => boolean;
  /** Whether an API key is still stored: a token dies with its key. */
  keyAlive: (id: string) => boolean;
  /** A text file of a sandbox (memory's document ingest). */
  readSandboxFile: (sandboxId: string, path: string, maxBytes: number) => Promise<string>;
}

/**
 * Cove's runtime services — the model gateway, memory and search — built once per Cove.
 * Served twice: to API key holders on Cove's port (`routes`, behind the API's key check), and
 * to sandboxes on the bridge address (`listen`), where a sandbox-scoped token authenticates.
 */
export function createServices(opts: ServicesOptions) {
  const config = opts.config ?? loadServicesConfig(opts.configPath ?? join(opts.home, 'services.json'));
  const db = openServicesDb(join(opts.home, 'services.db'));
  const tokens = createTokens(loadSecret(join(opts.home, 'services.secret')));
  const usage = createUsage(db);
  const quotas = createQuotas({ ...config.quotas, usage, db });
  const models = createModelMap(providers(config));
  const upstream = { timeoutMs: config.timeoutMs, retries: config.retries, retryBaseMs: config.retryBaseMs };

  // Memory's vectors come through the gateway's own provider call, counted to the key.
  const embeddingModel = config.memory.embeddingModel;
  const embed = embeddingModel
    ? async (texts: string[], keyId: string): Promise<Float32Array[] | undefined> => {
        const at = Date.now();
        try {
          const provider = models.resolve(embeddingModel, 'openai');
          const body = JSON.stringify({ model: embeddingModel, input: texts });
          const res = await callUpstream(provider, '/embeddings', body, new Headers(), upstream);
          const json = (await res.json()) as {
            data?: Array<{ index: number; embedding: number[] }>;
            usage?: { prompt_tokens?: number };
          };
          usage.record({
            at,
            keyId,
            service: 'memory',
            model: embeddingModel,
            provider: provider.name,
            inputTokens: json.usage?.prompt_tokens ?? 0,
            outputTokens: 0,
            status: res.status,
          });
          if (!res.ok || !json.data || json.data.length !== texts.length)
            throw new Error(`status ${res.status}`);
          return json.data.sort((a, b) => a.index - b.index).map((d) => Float32Array.from(d.embedding));
        } catch (err) {
          opts.log.warn(
            { err, model: embeddingModel },
            'embedding failed: memory falls back to full-text recall',
          );
          return undefined;
        }
      }
    : undefined;
  const memory = createMemory(db, {
    capacity: config.memory.capacity,
    decayDays: config.memory.decayDays,
    ...(embed && { embed }),
  });
  memory.sweep();
  const sweeper = setInterval(() => {
    try {
      memory.sweep();
    } catch (err) {
      opts.log.error({ err }, 'memory sweep failed');
    }
  }, 60_000);
  sweeper.unref();

  function app(authenticate: MiddlewareHandler<ServicesEnv>): Hono<ServicesEnv> {
    const a = new Hono<ServicesEnv>();
    a.onError(servicesErrorHandler(opts.log));
    a.use('/v1/*', authenticate);
    a.route(
      '/',
      modelRoutes({
        models,
        usage,
        quotas,
        log: opts.log,
        upstream,
        maxRequestBytes: config.maxRequestBytes,
      }),
    );
    a.route(
      '/',
      memoryRoutes({
        memory,
        maxRequestBytes: config.maxRequestBytes,
        readSandboxFile: opts.readSandboxFile,
      }),
    );
    a.route(
      '/',
      searchRoutes({
        ...(config.search && { provider: config.search }),
        quotas,
        usage,
        timeoutMs: config.timeoutMs,
      }),
    );
    a.get('/v1/usage', (c) => {
      const who = c.get('principal');
      return c.json(
        who.sandboxId ? usage.summary('sandbox', who.sandboxId) : usage.summary('key', who.keyId),
      );
    });
    return a;
  }

  // Cove's port: the API's key check ran before and named the key.
  const routes = app(async (c, next) => {
    c.set('principal', { keyId: c.get('keyId') });
    await next();
  });

  // The bridge address: only sandbox tokens, sent as OpenAI (Bearer) or Anthropic (x-api-key) SDKs do.
  const sandboxRoutes = app(async (c, next) => {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const token = bearer ?? c.req.header('x-api-key');
    if (!token)
      throw new CoveError('unauthenticated', 'missing token: send the sandbox token as a Bearer token');
    const t = tokens.parse(token);
    if (!t || !opts.sandboxAlive(t.sandboxId) || !opts.keyAlive(t.keyId))
      throw new CoveError('unauthenticated', 'invalid or expired sandbox token');
    c.set('principal', t);
    await next();
  });
  sandboxRoutes.notFound((c) =>
    c.json({ error: { message: `no route ${c.req.method} ${c.req.path}`, type: 'not_found_error' } }, 404),
  );

  let server: Server | undefined;

  return {
    config,
    usage,
    memory,
    quotas,
    routes,

    /** The variables a new sandbox gets: its own token, never a provider's key. */
    sandboxEnv(sandboxId: string, keyId: string, baseUrl: string): Record<string, string> {
      const token = tokens.mint({ sandboxId, keyId });
      const env: Record<string, string> = { COVE_SERVICES_URL: baseUrl, COVE_SERVICES_TOKEN: token };
      const apis = new Set(Object.values(config.providers).map((p) => p.api));
      if (apis.has('openai')) Object.assign(env, { OPENAI_BASE_URL: `${baseUrl}/v1`, OPENAI_API_KEY: token });
      if (apis.has('anthropic'))
        Object.assign(env, { ANTHROPIC_BASE_URL: baseUrl, ANTHROPIC_API_KEY: token });
      return env;
    },

    /** Serves the sandboxes' side on the bridge address; call after the bridge exists. */
    async listen(host: string, port: number): Promise<void> {
      const listener = getRequestListener(sandboxRoutes.fetch);
      server = createServer({ keepAliveTimeout: 65_000 }, (req, res) => void listener(req, res));
      await new Promise<void>((resolve, reject) => {
        server!.once('error', reject);
        server!.listen(port, host, () => resolve());
      });
    },

    sandboxGone(id: string): void {
      quotas.forget(id);
    },

    async close(): Promise<void> {
      clearInterval(sweeper);
      if (server) {
        const closed = new Promise<void>((resolve) => server!.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      }
      db.close();
    },
  };
}

export type Services = ReturnType<typeof createServices>;
