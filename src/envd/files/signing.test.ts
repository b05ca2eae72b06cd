import { describe, expect, it } from 'vitest';
import { signature, signingError } from './signing.ts';

const token = '0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0';

describe('/files signing (envd api/auth.go)', () => {
  it("matches the SDK's known vector", () => {
    expect(signature('hello.txt', 'read', 'user', token)).toBe(
      'v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E',
    );
  });

  it("answers envd's exact messages", () => {
    const now = 1_800_000_000_000;
    const q = (o: Record<string, string>) => new URLSearchParams(o);
    const check = (query: URLSearchParams, headerToken?: string, op: 'read' | 'write' = 'read') =>
      signingError({ token, headerToken, query, op, nowMs: now });
    const exp = String(now / 1000 + 10);
    const signed = signature('a.txt', 'read', '', token, Number(exp));
    expect(
      signingError({ token: undefined, headerToken: undefined, query: q({}), op: 'read' }),
    ).toBeUndefined();
    expect(check(q({}), token)).toBeUndefined();
    expect(check(q({}), 'nope')).toBe('access token present in header but does not match');
    expect(check(q({ path: 'a.txt' }))).toBe('missing signature query parameter');
    expect(check(q({ path: 'a.txt', signature: signed, signature_expiration: exp }))).toBeUndefined();
    expect(
      check(q({ path: 'a.txt', signature: signed, signature_expiration: exp }), undefined, 'write'),
    ).toBe('invalid signature');
    expect(check(q({ path: 'b.txt', signature: signed, signature_expiration: exp }))).toBe(
      'invalid signature',
    );
    const old = String(now / 1000 - 10);
    const expired = signature('a.txt', 'read', 'root', token, Number(old));
    expect(check(q({ path: 'a.txt', username: 'root', signature: expired, signature_expiration: old }))).toBe(
      'signature is already expired',
    );
    expect(() => check(q({ path: 'a.txt', signature: signed, signature_expiration: 'soon' }))).toThrow(
      expect.objectContaining({ code: 'invalid_argument' }),
    );
  });
});
