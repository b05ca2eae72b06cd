import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';

const quota = z
  .object({
    /** Requests in any sliding minute. */
    requestsPerMinute: z.number().int().positive().optional(),
    /** Model tokens (as the upstream reports them) in any sliding 24 hours. */
    tokensPerDay: z.number().int().positive().optional(),
  })
  .strict();

const provider = z
  .object({
    /** The wire format the provider speaks: OpenAI's chat/embeddings, or Anthropic's messages. */
    api: z.enum(['openai', 'anthropic']),
    /** OpenAI: up to and including `/v1` (`https://api.openai.com/v1`); Anthropic: the host
     * (`https://api.anthropic.com`), as each SDK's base URL. */
    baseUrl: z.url(),
    /** The provider's key, held by Cove and never given to a sandbox; or the name of an
     * environment variable of Cove's process that holds it. */
    apiKey: z.string().min(1).optional(),
    apiKeyEnv: z.string().min(1).optional(),
    /** Model names this provider serves, as clients ask for them. */
    models: z.array(z.string().min(1).max(200)).min(1),
  })
  .strict();

const schema = z
  .object({
    providers: z.record(z.string().regex(/^[\w.-]{1,64}$/), provider).default({}),
    quotas: z
      .object({ perKey: quota.default({}), perSandbox: quota.default({}) })
      .strict()
      .default({
        perKey: {},
        perSandbox: {},
      }),
    /** How long an upstream may take to answer (headers; a stream may then run longer). */
    timeoutMs: z.number().int().positive().default(120_000),
    /** Retries on an upstream 429, 5xx or connection failure, before any byte reached the client. */
    retries: z.number().int().min(0).max(10).default(2),
    retryBaseMs: z.number().int().min(0).default(250),
    maxRequestBytes: z
      .number()
      .int()
      .positive()
      .default(4 * 2 ** 20),
    memory: z
      .object({
        /** A model of an OpenAI-compatible provider above: recall then adds vector similarity. */
        embeddingModel: z.string().optional(),
        /** Entries per key and namespace; beyond, the least recently used go first. */
        capacity: z.number().int().positive().default(100_000),
        /** Long-term entries not recalled for this many days are forgotten (decay). */
        decayDays: z.number().positive().default(90),
      })
      .strict()
      .default({ capacity: 100_000, decayDays: 90 }),
    /** A SearXNG-compatible JSON API (`https://searx.example/search`, asked with `format=json`). */
    search: z.object({ url: z.url(), apiKey: z.string().optional() }).strict().optional(),
  })
  .strict();

export type ServicesConfig = z.infer<typeof schema>;
export type ProviderConfig = z.infer<typeof provider> & { name: string; key: string };
export type QuotaConfig = z.infer<typeof quota>;

/**
 * The operator's services file (COVE_SERVICES_CONFIG, default `<home>/services.json`), read once
 * at start. A missing file is an empty configuration: memory works, models and search answer
 * that nothing is configured. A malformed one stops the start with the field at fault.
 */
export function loadServicesConfig(path: string, env: NodeJS.ProcessEnv = process.env): ServicesConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return schema.parse({});
    throw new CoveError('invalid_argument', `services config ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CoveError('invalid_argument', `services config ${path}: not valid JSON`);
  }
  return parseServicesConfig(raw, env, path);
}

export function parseServicesConfig(raw: unknown, env: NodeJS.ProcessEnv = {}, where = 'services config') {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CoveError('invalid_argument', `${where}: ${issue?.path.join('.')}: ${issue?.message}`);
  }
  for (const [name, p] of Object.entries(parsed.data.providers)) {
    if (!p.apiKey === !p.apiKeyEnv)
      throw new CoveError('invalid_argument', `${where}: provider ${name}: give apiKey or apiKeyEnv`);
    if (p.apiKeyEnv && !env[p.apiKeyEnv])
      throw new CoveError('invalid_argument', `${where}: provider ${name}: $${p.apiKeyEnv} is not set`);
  }
  return parsed.data;
}

/** The providers with their keys resolved. */
export function providers(config: ServicesConfig, env: NodeJS.ProcessEnv = process.env): ProviderConfig[] {
  return Object.entries(config.providers).map(([name, p]) => ({
    ...p,
    name,
    key: p.apiKey ?? env[p.apiKeyEnv ?? ''] ?? '',
  }));
}
