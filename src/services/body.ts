import type { Context } from 'hono';
import { CoveError } from '../core/errors.ts';

/** Reads a JSON object body of at most `max` bytes, declared or chunked; clear 400/413-class errors. */
export async function readJson(c: Context, max: number): Promise<Record<string, unknown>> {
  const tooLarge = () =>
    new CoveError('invalid_argument', `request body is larger than the limit of ${max} bytes`);
  if (Number(c.req.header('content-length') ?? 0) > max) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const stream = c.req.raw.body;
  if (stream)
    for await (const chunk of stream as AsyncIterable<Uint8Array>) {
      size += chunk.byteLength;
      if (size > max) throw tooLarge();
      chunks.push(chunk);
    }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new CoveError('invalid_argument', 'request body is not valid JSON');
  }
  if (!json || typeof json !== 'object' || Array.isArray(json))
    throw new CoveError('invalid_argument', 'request body must be a JSON object');
  return json as Record<string, unknown>;
}
