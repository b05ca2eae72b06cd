import type { Context } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import { isSandboxId } from '../core/ids.ts';

/** Parses a JSON body with a schema; any failure is a 400 that names the field. */
export async function body<T extends z.ZodType>(c: Context, schema: T): Promise<z.infer<T>> {
  let raw: unknown;
  try {
    const text = await c.req.text();
    raw = text === '' ? {} : JSON.parse(text);
  } catch {
    throw new CoveError('invalid_argument', 'request body is not valid JSON');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CoveError(
      'invalid_argument',
      `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`,
    );
  }
  return parsed.data;
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
