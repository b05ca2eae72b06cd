import type { IncomingMessage } from 'node:http';
import type { Context } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import { isSandboxId } from '../core/ids.ts';
import { parseAs } from '../core/schema.ts';

/** No API body comes near this: the largest, a create with envVars, stays well under it. */
export const MAX_BODY_BYTES = 1 << 20;

/** Reads the body up to MAX_BODY_BYTES, whether its length is declared or it is chunked (the SDK chunks). */
async function readText(c: Context): Promise<string> {
  const tooLarge = () =>
    new CoveError('invalid_argument', `request body is larger than ${MAX_BODY_BYTES >> 20} MiB`);
  if (Number(c.req.header('content-length') ?? 0) > MAX_BODY_BYTES) throw tooLarge();
  // Under Node's server (@hono/node-server puts the IncomingMessage in the env), straight from
  // it: building the web Request and its body stream cost ~0.4 ms of a create's ~3 ms.
  const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
  if (incoming && !incoming.readableDidRead && !c.req.raw.bodyUsed) return readIncoming(incoming, tooLarge);
  const stream = c.req.raw.body;
  if (!stream) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function readIncoming(incoming: IncomingMessage, tooLarge: () => Error): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: Error) => {
      incoming.off('data', onData).off('end', onEnd).off('error', done).off('close', onClose);
      if (err) reject(err);
      else resolve(Buffer.concat(chunks, size).toString('utf8'));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      // What is left of it is drained by the server's own cleanup after the reply.
      if (size > MAX_BODY_BYTES) return done(tooLarge());
      chunks.push(chunk);
    };
    const onEnd = () => done();
    const onClose = () => done(new CoveError('invalid_argument', 'the request ended before its body'));
    incoming.on('data', onData).on('end', onEnd).on('error', done).on('close', onClose);
  });
}

/** Parses a JSON body with a schema; any failure is a 400 that names the field. */
export async function body<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  const text = await readText(c);
  let raw: unknown;
  try {
    raw = text.trim() === '' ? {} : JSON.parse(text);
  } catch {
    throw new CoveError('invalid_argument', 'request body is not valid JSON');
  }
  return parseAs(schema, raw);
}

/** A sandbox id from the path. A malformed id cannot exist: 404, as E2B answers. */
export function sandboxId(c: Context): string {
  const id = c.req.param('id') ?? '';
  if (!isSandboxId(id)) throw new CoveError('not_found', `sandbox ${id} not found`);
  return id;
}

const MAX_ENTRIES = 256;
export const stringMap = z
  .record(z.string().max(256), z.string().max(16_384))
  .refine((m) => Object.keys(m).length <= MAX_ENTRIES, `at most ${MAX_ENTRIES} entries`);

export const envMap = z
  .record(
    z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
      .max(256),
    z.string().max(131_072),
  )
  .refine((m) => Object.keys(m).length <= MAX_ENTRIES, `at most ${MAX_ENTRIES} entries`);
