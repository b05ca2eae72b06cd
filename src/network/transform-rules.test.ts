import { describe, expect, it } from 'vitest';
import { parseRules, placeholders, rulesFor, secretNames } from './transform-rules.ts';

const rule = (headers: Record<string, string>) => [{ transform: { headers } }];

describe('transform rules', () => {
  it('lowercases domains and keeps headers as given', () => {
    expect(parseRules({ 'API.Example.com.': rule({ Authorization: 'Bearer ${e2b.secrets.Key}' }) })).toEqual({
      'api.example.com': rule({ Authorization: 'Bearer ${e2b.secrets.Key}' }),
    });
    expect(parseRules(null)).toEqual({});
  });

  it('finds placeholders, secret names lowercased, and refuses malformed ones', () => {
    expect(placeholders('a ${e2b.secrets.One} b ${e2b.identity.tokens.aws}')).toEqual([
      { kind: 'secret', name: 'one', start: 2, end: 20 },
      { kind: 'identity', name: 'aws', start: 23, end: 49 },
    ]);
    expect(placeholders('${other} plain')).toEqual([]);
    for (const bad of ['${e2b.secrets.x', '${e2b.secrets.}', '${e2b.secrets.a${e2b.secrets.b}}'])
      expect(() => placeholders(bad)).toThrow(/malformed placeholder/);
    expect(
      secretNames({
        a: rule({ X: '${e2b.secrets.A}', Y: '${e2b.secrets.b}' }),
        b: rule({ Z: '${e2b.secrets.a}' }),
      }),
    ).toEqual(['a', 'b']);
    expect(secretNames({ a: rule({ X: 'Bearer ${e2b.identity.tokens.AWS}' }) }, 'identity')).toEqual(['AWS']);
  });

  it('refuses what would break the request or cannot be served', () => {
    for (const [rules, message] of [
      [{ '*': rule({ A: 'b' }) }, /bare \* is not allowed/],
      [{ '1.2.3.4': rule({ A: 'b' }) }, /not a domain name/],
      [{ 'a.test': rule({ 'Bad Name': 'b' }) }, /not an HTTP token/],
      [{ 'a.test': rule({ 'Content-Length': '1' }) }, /frames the request/],
      [{ 'a.test': rule({ A: 'line\r\nInjected: 1' }) }, /printable characters/],
      [{ 'a.test': rule({ A: '${e2b.identity.tokens.}' }) }, /malformed placeholder/],
      [{ 'a.test': 'not a list' }, /a list of rules/],
      [Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`d${i}.test`, []])), /at most 10 domains/],
    ] as const)
      expect(() => parseRules(rules), JSON.stringify(rules)).toThrow(message);
  });

  it('picks the exact domain, else the longest wildcard, and never merges', () => {
    const rules = parseRules({
      'api.example.com': rule({ A: 'exact' }),
      '*.example.com': rule({ A: 'short' }),
      '*.api.example.com': rule({ A: 'long' }),
    });
    expect(rulesFor(rules, 'API.example.com')?.domain).toBe('api.example.com');
    expect(rulesFor(rules, 'v1.api.example.com')?.domain).toBe('*.api.example.com');
    expect(rulesFor(rules, 'www.example.com')?.domain).toBe('*.example.com');
    expect(rulesFor(rules, 'example.com')).toBeUndefined();
  });
});
