import { describe, expect, it } from 'vitest';
import { metadataOf } from './metadata.ts';

describe('X-Metadata-* headers', () => {
  it('takes the prefixed headers, keys lowercased by Node', () => {
    expect(metadataOf({ 'x-metadata-author': 'ann', 'x-metadata-empty': '', host: 'x' })).toEqual({
      author: 'ann',
      empty: '',
    });
    expect(metadataOf({})).toEqual({});
  });
  it('rejects what envd rejects, with a 400', () => {
    const bad = (h: Record<string, string>) => () => metadataOf(h);
    expect(bad({ 'x-metadata-k': 'caf\u00e9' })).toThrow(expect.objectContaining({ status: 400 }));
    expect(bad({ ['x-metadata-' + 'k'.repeat(247)]: 'v' })).toThrow(expect.objectContaining({ status: 400 }));
    expect(bad({ 'x-metadata-a': 'v'.repeat(3000), 'x-metadata-b': 'v'.repeat(1100) })).toThrow(
      expect.objectContaining({ status: 400 }),
    );
  });
});
