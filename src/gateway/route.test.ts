import { describe, expect, it } from 'vitest';
import { hostName, routeOf } from './route.ts';
import { signature } from '../envd/files/signing.ts';
import { signedSandbox } from './signed.ts';

const ID = 'abcdefghij0123456789';

describe('routeOf', () => {
  const sandbox = (port: number, sandboxId = ID) => ({ kind: 'sandbox', sandboxId, port });

  it('sends requests without sandbox identity to the API, whatever the host', () => {
    for (const host of [
      '127.0.0.1:3000',
      'localhost',
      '[::1]:3000',
      'cove.lan',
      'sandbox.e2b.app',
      undefined,
    ])
      expect(routeOf({ headers: { host }, url: '/v2/sandboxes' })).toEqual({ kind: 'api' });
    expect(routeOf({ headers: { host: 'cove.lan' }, url: '/files?path=a' })).toEqual({ kind: 'api' });
  });

  it('routes on E2b-Sandbox-Id and E2b-Sandbox-Port under localhost, IPs, sandbox.<domain> and other names', () => {
    for (const host of [
      'localhost:3000',
      '127.0.0.1:3000',
      '[::1]:3000',
      'sandbox.cove.test',
      'cove.lan:3000',
    ])
      expect(
        routeOf({ headers: { host, 'e2b-sandbox-id': ID, 'e2b-sandbox-port': '49983' } }, 'cove.test'),
      ).toEqual(sandbox(49983));
    expect(routeOf({ headers: { 'e2b-sandbox-id': ID, 'e2b-sandbox-port': '49999' } })).toEqual(
      sandbox(49999),
    );
  });

  it('answers 400 for one header without the other or a malformed one, as upstream', () => {
    const invalid = (headers: Record<string, string>) =>
      routeOf({ headers: { host: 'localhost', ...headers } });
    expect(invalid({ 'e2b-sandbox-id': ID })).toEqual({
      kind: 'invalid',
      message: 'Missing header: E2b-Sandbox-Port',
    });
    expect(invalid({ 'e2b-sandbox-port': '49983' })).toEqual({
      kind: 'invalid',
      message: 'Missing header: E2b-Sandbox-Id',
    });
    for (const port of ['0', '65536', 'x', '49983x', '-1', ''])
      expect(invalid({ 'e2b-sandbox-id': ID, 'e2b-sandbox-port': port })).toMatchObject({ kind: 'invalid' });
    for (const id of ['ABC', 'a.b', '', 'a'.repeat(65), 'a, b'])
      expect(invalid({ 'e2b-sandbox-id': id, 'e2b-sandbox-port': '49983' })).toMatchObject({
        kind: 'invalid',
      });
  });

  it('routes <port>-<id>.<domain> hosts, and the host wins over the headers', () => {
    expect(routeOf({ headers: { host: `8080-${ID}.cove.test` } }, 'cove.test')).toEqual(sandbox(8080));
    expect(routeOf({ headers: { host: `49983-${ID}.cove.test:3000` } }, 'cove.test')).toEqual(sandbox(49983));
    expect(
      routeOf(
        { headers: { host: `8080-${ID}.cove.test`, 'e2b-sandbox-id': 'other', 'e2b-sandbox-port': '49983' } },
        'cove.test',
      ),
    ).toEqual(sandbox(8080));
    // With a domain set, only that domain counts; without one, any name does.
    expect(routeOf({ headers: { host: `8080-${ID}.elsewhere.test` } }, 'cove.test')).toEqual({ kind: 'api' });
    expect(routeOf({ headers: { host: `8080-${ID}.elsewhere.test` } })).toEqual(sandbox(8080));
    expect(routeOf({ headers: { host: `8080-${ID}.COVE.TEST` } }, 'cove.test')).toEqual(sandbox(8080));
    for (const host of [`8080-${ID}`, `8080-${ID}.`, '8080-.cove.test'])
      expect(routeOf({ headers: { host } }, 'cove.test')).toEqual({ kind: 'api' });
  });

  it('matches only the name of a domain that names a port (localhost:3000)', () => {
    expect(routeOf({ headers: { host: `8080-${ID}.localhost:3000` } }, 'localhost:3000')).toEqual(
      sandbox(8080),
    );
    expect(routeOf({ headers: { host: `8080-${ID}.localhost` } }, 'localhost:3000')).toEqual(sandbox(8080));
    expect(routeOf({ headers: { host: `8080-${ID}.cove.test:3000` } }, 'localhost:3000')).toEqual({
      kind: 'api',
    });
  });

  it('answers 400 naming the port for ports outside 1-65535, in the host or the header', () => {
    for (const [text, domain] of [
      ['0', 'cove.test'],
      ['70000', 'cove.test'],
      ['70000', undefined],
      ['000080', 'cove.test'],
    ] as const)
      expect(routeOf({ headers: { host: `${text}-${ID}.cove.test:3000` } }, domain)).toEqual({
        kind: 'invalid',
        message: `Invalid sandbox port "${text}" in host ${text}-${ID}.cove.test: a port is a number from 1 to 65535`,
      });
    expect(routeOf({ headers: { 'e2b-sandbox-id': ID, 'e2b-sandbox-port': '70000' } })).toEqual({
      kind: 'invalid',
      message: 'Invalid sandbox port "70000" in header E2b-Sandbox-Port: a port is a number from 1 to 65535',
    });
  });

  it('takes /files with a signature and no headers for a signed URL', () => {
    expect(routeOf({ headers: {}, url: '/files?path=a&signature=v1_x' })).toEqual({ kind: 'signed-files' });
    expect(routeOf({ headers: {}, url: '/files/x?signature=v1_x' })).toEqual({ kind: 'api' });
    expect(
      routeOf({
        headers: { 'e2b-sandbox-id': ID, 'e2b-sandbox-port': '49983' },
        url: '/files?signature=v1_x',
      }),
    ).toEqual(sandbox(49983));
  });

  it('reads host names as the Host header spells them', () => {
    expect(hostName('Cove.LAN:3000')).toBe('cove.lan');
    expect(hostName('[::1]:80')).toBe('[::1]');
    expect(hostName(undefined)).toBe('');
  });
});

describe('signed file URLs', () => {
  it('signs as the SDK does (its static test vector)', () => {
    // e2b-dev/E2B packages/js-sdk/tests/sandbox/secure.test.ts, "static signing key comparison".
    expect(signature('hello.txt', 'read', 'user', '0tQG31xiMp0IOQfaz9dcwi72L1CPo8e0')).toBe(
      'v1_gUtH/s9YCJWgCizjfUxuWfhFE4QSydOWEIIvfLwDr6E',
    );
  });

  it('finds the sandbox whose token reproduces the signature, for the method’s operation', () => {
    const sandboxes = [{ id: 'a' }, { id: 'b', envdAccessToken: 'tb' }, { id: 'c', envdAccessToken: 'tc' }];
    const sign = (token: string, operation: 'read' | 'write', expiration?: number) =>
      signature('/x y', operation, 'root', token, expiration);
    const url = (sig: string, extra = '') =>
      `/files?${new URLSearchParams({ path: '/x y', username: 'root', signature: sig }).toString()}${extra}`;
    expect(signedSandbox('GET', url(sign('tc', 'read')), sandboxes)).toBe('c');
    expect(signedSandbox('POST', url(sign('tb', 'write')), sandboxes)).toBe('b');
    expect(signedSandbox('POST', url(sign('tb', 'read')), sandboxes)).toBeUndefined();
    expect(signedSandbox('PUT', url(sign('tb', 'write')), sandboxes)).toBeUndefined();
    expect(signedSandbox('GET', url(sign('tc', 'read', 99)), sandboxes)).toBeUndefined();
    expect(signedSandbox('GET', url(sign('tc', 'read', 99), '&signature_expiration=99'), sandboxes)).toBe(
      'c',
    );
    expect(signedSandbox('GET', url('v1_short'), sandboxes)).toBeUndefined();
  });
});
