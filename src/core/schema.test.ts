import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CoveError } from './errors.ts';
import { parseAs } from './schema.ts';

describe('parseAs', () => {
  const schema = z.object({ size: z.object({ n: z.number() }) }).strict();

  it('returns what the schema parsed', () => {
    expect(parseAs(schema, { size: { n: 3 } })).toEqual({ size: { n: 3 } });
  });

  it('names the first field at fault in one invalid_argument, "body" when it is the whole', () => {
    const fails = (raw: unknown) => {
      try {
        parseAs(schema, raw);
      } catch (err) {
        expect(err).toBeInstanceOf(CoveError);
        expect((err as CoveError).code).toBe('invalid_argument');
        return (err as Error).message;
      }
      throw new Error('parsed');
    };
    expect(fails({ size: { n: 'x' } })).toMatch(/^size\.n: /);
    expect(fails('text')).toMatch(/^body: /);
  });
});
