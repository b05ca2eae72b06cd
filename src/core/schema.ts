import type { z } from 'zod';
import { CoveError } from './errors.ts';

/**
 * `raw` checked by a zod schema (zod: the routes' validation library). A failure is one
 * invalid_argument (400) naming the first field at fault, the same wording on every route.
 */
export function parseAs<T extends z.ZodType>(schema: T, raw: unknown): z.infer<T> {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new CoveError(
    'invalid_argument',
    `${issue?.path.join('.') || 'body'}: ${issue?.message ?? 'invalid'}`,
  );
}
