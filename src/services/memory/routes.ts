import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { CoveError } from '../../core/errors.ts';
import { parseAs } from '../../core/schema.ts';
import { readJson } from '../body.ts';
import type { ServicesEnv } from '../env.ts';
import type { Memory, Scope } from './store.ts';

export interface MemoryRouteDeps {
  memory: Memory;
  maxRequestBytes: number;
  /** Reads a file of the calling sandbox (as its default user), for ingesting documents. */
  readSandboxFile: (sandboxId: string, path: string, maxBytes: number) => Promise<string>;
}

const MAX_ENTRY = 64 * 1024;
const metadata = z.record(z.string(), z.unknown()).optional();
const entry = z
  .object({
    text: z.string().min(1).max(MAX_ENTRY),
    kind: z.enum(['short', 'fact']).optional(),
    ttlSeconds: z
      .number()
      .int()
      .positive()
      .max(10 * 365 * 86400)
      .optional(),
    session: z.string().min(1).max(200).optional(),
    metadata,
  })
  .strict();
const schemas = {
  add: z.union([entry, z.object({ entries: z.array(entry).min(1).max(1000) }).strict()]),
  recall: z
    .object({
      query: z.string().min(1).max(4096),
      limit: z.number().int().min(1).max(100).optional(),
      kind: z.enum(['short', 'fact', 'chunk']).optional(),
      session: z.string().max(200).optional(),
    })
    .strict(),
  document: z
    .object({
      title: z.string().min(1).max(500).optional(),
      text: z.string().min(1).optional(),
      path: z.string().min(1).max(4096).optional(),
      sandboxId: z.string().optional(),
      chunkSize: z.number().int().min(200).max(20_000).optional(),
      metadata,
    })
    .strict(),
};

async function parse<T extends z.ZodType>(c: Context, max: number, schema: T): Promise<z.infer<T>> {
  return parseAs(schema, await readJson(c, max));
}

/**
 * Memory's REST API, per API key and namespace (`/v1/memory/<namespace>/…`); a sandbox's
 * calls use its creator key's memory, so sandboxes of one key share what they remember.
 */
export function memoryRoutes(deps: MemoryRouteDeps): Hono<ServicesEnv> {
  const { memory, maxRequestBytes: max } = deps;
  const app = new Hono<ServicesEnv>();
  const scope = (c: Context<ServicesEnv>): Scope => {
    const namespace = c.req.param('ns') ?? '';
    if (!/^[\w.-]{1,64}$/.test(namespace))
      throw new CoveError('invalid_argument', `namespace ${namespace}: 1-64 letters, digits or _.-`);
    return { keyId: c.get('principal').keyId, namespace };
  };
  const entryId = (c: Context) => {
    const id = Number(c.req.param('id'));
    if (!Number.isSafeInteger(id) || id <= 0)
      throw new CoveError('not_found', `memory ${c.req.param('id')} not found`);
    return id;
  };

  app.post('/v1/memory/:ns/entries', async (c) => {
    const s = scope(c);
    const body = await parse(c, max, schemas.add);
    const entries = await memory.add(s, 'entries' in body ? body.entries : [body]);
    return c.json('entries' in body ? { entries } : entries[0], 201);
  });
  app.get('/v1/memory/:ns/entries', (c) => {
    const { kind, session, limit } = c.req.query();
    if (kind !== undefined && !['short', 'fact', 'chunk'].includes(kind))
      throw new CoveError('invalid_argument', 'kind: short, fact or chunk');
    const n = limit === undefined ? 100 : Number(limit);
    if (!Number.isInteger(n) || n < 1 || n > 1000)
      throw new CoveError('invalid_argument', 'limit: 1 to 1000');
    const list = memory.list(scope(c), {
      ...(kind !== undefined && { kind: kind as 'short' | 'fact' | 'chunk' }),
      ...(session !== undefined && { session }),
      limit: n,
    });
    return c.json({ entries: list });
  });
  app.get('/v1/memory/:ns/entries/:id', (c) => c.json(memory.get(scope(c), entryId(c))));
  app.delete('/v1/memory/:ns/entries/:id', (c) => {
    memory.remove(scope(c), entryId(c));
    return c.body(null, 204);
  });
  app.post('/v1/memory/:ns/recall', async (c) => {
    const s = scope(c);
    const body = await parse(c, max, schemas.recall);
    return c.json({ results: await memory.recall(s, body) });
  });
  app.delete('/v1/memory/:ns', (c) => c.json({ forgotten: memory.clear(scope(c)) }));

  app.post('/v1/memory/:ns/documents', async (c) => {
    const s = scope(c);
    const body = await parse(c, max, schemas.document);
    if ((body.text === undefined) === (body.path === undefined))
      throw new CoveError(
        'invalid_argument',
        'give the document as text or as the path of a file in a sandbox',
      );
    let text = body.text;
    if (body.path !== undefined) {
      // From a sandbox: its own files; from Cove's port: the sandbox named in the body.
      const sandboxId = c.get('principal').sandboxId ?? body.sandboxId;
      if (!sandboxId) throw new CoveError('invalid_argument', 'sandboxId: which sandbox holds the file');
      text = await deps.readSandboxFile(sandboxId, body.path, max);
    }
    const doc = await memory.ingest(s, {
      title: body.title ?? body.path ?? 'untitled',
      text: text!,
      ...(body.path !== undefined && { source: body.path }),
      ...(body.metadata && { metadata: body.metadata }),
      ...(body.chunkSize && { chunkSize: body.chunkSize }),
    });
    return c.json(doc, 201);
  });
  app.get('/v1/memory/:ns/documents', (c) => c.json({ documents: memory.documents(scope(c)) }));
  app.delete('/v1/memory/:ns/documents/:doc', (c) => {
    memory.removeDocument(scope(c), c.req.param('doc'));
    return c.body(null, 204);
  });
  return app;
}
