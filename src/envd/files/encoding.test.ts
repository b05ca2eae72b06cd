import { describe, expect, it } from 'vitest';
import { contentDisposition, contentTypeOf, requestEncoding, responseEncoding } from './encoding.ts';
import { rangeOf } from './range.ts';

describe('/files encodings (envd api/encoding.go)', () => {
  it('negotiates gzip when the client prefers it, identity otherwise', () => {
    expect(responseEncoding(undefined, false)).toBe('identity');
    expect(responseEncoding('gzip', false)).toBe('gzip');
    expect(responseEncoding('gzip;q=1, deflate;q=0.5', false)).toBe('gzip');
    expect(responseEncoding('gzip, deflate', false)).toBe('identity'); // fetch's default
    expect(responseEncoding('br;q=1, gzip;q=0.5', false)).toBe('identity');
    expect(responseEncoding('br, gzip;q=0.5, identity;q=0', false)).toBe('gzip');
    expect(responseEncoding('identity;q=1, gzip;q=0.5', false)).toBe('identity');
    expect(responseEncoding('br', false)).toBe('identity');
    expect(responseEncoding('*', false)).toBe('identity');
    expect(responseEncoding('*, identity;q=0', false)).toBe('gzip');
    expect(responseEncoding('gzip', true)).toBe('identity');
    expect(() => responseEncoding('br, identity;q=0', false)).toThrow(
      expect.objectContaining({ status: 406 }),
    );
    expect(() => responseEncoding('gzip, *;q=0', true)).toThrow(expect.objectContaining({ status: 406 }));
  });

  it('accepts gzip request bodies only', () => {
    expect(requestEncoding(undefined)).toBe('identity');
    expect(requestEncoding('GZIP')).toBe('gzip');
    expect(() => requestEncoding('br')).toThrow(expect.objectContaining({ status: 400 }));
  });

  it('names types and dispositions as Go does', () => {
    expect(contentTypeOf('a/b.JSON')).toBe('application/json');
    expect(contentTypeOf('noext')).toBe('application/octet-stream');
    expect(contentDisposition('hello.txt')).toBe('inline; filename=hello.txt');
    expect(contentDisposition('a b".txt')).toBe('inline; filename="a b\\".txt"');
    expect(contentDisposition('été.txt')).toBe("inline; filename*=utf-8''%C3%A9t%C3%A9.txt");
  });

  it('parses one byte range', () => {
    expect(rangeOf('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(rangeOf('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(rangeOf('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(rangeOf('bytes=50-500', 100)).toEqual({ start: 50, end: 99 });
    expect(rangeOf('bytes=100-', 100)).toBe('unsatisfiable');
    expect(rangeOf('bytes=0-1,5-6', 100)).toBeUndefined();
    expect(rangeOf('items=1-2', 100)).toBeUndefined();
  });
});
