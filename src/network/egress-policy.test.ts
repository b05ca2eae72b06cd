import { describe, expect, it } from 'vitest';
import { egressPolicy, matchesDomain, parseNetwork, restricts } from './egress-policy.ts';

describe('parseNetwork', () => {
  it('normalises addresses, lowercases domains, and turns internet off into ALL_TRAFFIC denied', () => {
    const n = parseNetwork({
      allowOut: ['198.51.100.7', '203.0.113.9/24', 'API.Example.com.', '*.test'],
      denyOut: ['0.0.0.0/0'],
    });
    expect(n).toEqual({
      allowOut: ['198.51.100.7/32', '203.0.113.0/24', 'api.example.com', '*.test'],
      denyOut: ['0.0.0.0/0'],
      allowInternetAccess: false,
      allowPublicTraffic: true,
      httpsPorts: [],
    });
    expect(egressPolicy(n)).toEqual({
      allowCidrs: ['198.51.100.7/32', '203.0.113.0/24'],
      denyCidrs: ['0.0.0.0/0'],
      allowDomains: ['api.example.com', '*.test'],
      rules: {},
    });
    expect(parseNetwork({ allowInternetAccess: false }).denyOut).toEqual(['0.0.0.0/0']);
    expect(restricts(egressPolicy(parseNetwork({ allowOut: ['1.1.1.1'] })))).toBe(false);
  });

  it('refuses bad input with a message that names the entry', () => {
    const cases: Array<[Parameters<typeof parseNetwork>[0], RegExp]> = [
      [{ denyOut: ['example.com'] }, /denyOut\[0\] "example.com".*only be allowed/],
      [{ denyOut: ['1.2.3.4/33'] }, /not a valid IPv4/],
      [{ denyOut: ['256.1.1.1'] }, /not a valid IPv4/],
      [{ denyOut: ['0.0.0.0'] }, /unspecified/],
      [{ denyOut: ['::/0'] }, /IPv6/],
      [{ allowOut: ['exa mple.com'], denyOut: ['0.0.0.0/0'] }, /allowOut\[0\]/],
      [{ allowOut: ['-a.com'], denyOut: ['0.0.0.0/0'] }, /allowOut\[0\]/],
      [{ allowOut: ['**.a.com'], denyOut: ['0.0.0.0/0'] }, /allowOut\[0\]/],
      [{ allowOut: ['example.com'] }, /ALL_TRAFFIC/],
      [{ allowOut: 'example.com' }, /list of strings/],
      [{ httpsPorts: [0] }, /httpsPorts: 0/],
      [{ httpsPorts: [49983] }, /envd port/],
      [{ maskRequestHost: 'bad host:${PORT}' }, /maskRequestHost/],
      [{ maskRequestHost: 'a.com:99999' }, /maskRequestHost/],
      [{ allowPublicTraffic: 'no' }, /boolean/],
    ];
    for (const [input, message] of cases)
      expect(() => parseNetwork(input), JSON.stringify(input)).toThrow(message);
    expect(parseNetwork({ maskRequestHost: 'custom-host.example.com:${PORT}' }).maskRequestHost).toBe(
      'custom-host.example.com:${PORT}',
    );
  });
});

describe('matchesDomain', () => {
  it('matches exact names, *. below a name (not the name itself), and *', () => {
    expect(matchesDomain('API.example.com.', 'api.example.com')).toBe(true);
    expect(matchesDomain('a.b.example.com', '*.example.com')).toBe(true);
    expect(matchesDomain('example.com', '*.example.com')).toBe(false);
    expect(matchesDomain('badexample.com', '*.example.com')).toBe(false);
    expect(matchesDomain('anything.org', '*')).toBe(true);
    expect(matchesDomain('', '*')).toBe(false);
  });
});
