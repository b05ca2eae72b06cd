import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { endToEnd, hasBody, requestHeaders } from './headers.ts';

/** A raw header list from name/value pairs. */
const raw = (pairs: Array<[string, string]>) => pairs.flat();

/** An IncomingMessage as far as headers.ts reads one. */
function message(pairs: Array<[string, string]>, remoteAddress = '::ffff:192.0.2.1'): IncomingMessage {
  const headers = Object.fromEntries(pairs.map(([n, v]) => [n.toLowerCase(), v]));
  return { rawHeaders: raw(pairs), headers, socket: { remoteAddress } } as unknown as IncomingMessage;
}

describe('headers', () => {
  it('drops hop-by-hop headers and those Connection names, keeps TE: trailers and repeats', () => {
    const kept = endToEnd(
      raw([
        ['Connection', 'close, X-Secret'],
        ['X-Secret', '1'],
        ['Keep-Alive', 'timeout=5'],
        ['Transfer-Encoding', 'chunked'],
        ['TE', 'trailers'],
        ['Upgrade', 'h2c'],
        ['Proxy-Authorization', 'Basic eDp5'],
        ['Set-Cookie', 'a=1'],
        ['set-cookie', 'b=2'],
      ]),
    );
    expect(kept).toEqual(
      raw([
        ['TE', 'trailers'],
        ['Set-Cookie', 'a=1'],
        ['set-cookie', 'b=2'],
      ]),
    );
    expect(endToEnd(['TE', 'gzip'])).toEqual([]);
  });

  it('adds X-Forwarded-*, replacing a client’s Host and Proto claims but extending its For', () => {
    const req = message([
      ['Host', '8080-abc.localhost:3000'],
      ['X-Forwarded-For', '203.0.113.9'],
      ['X-Forwarded-Host', 'evil.example'],
      ['X-Forwarded-Proto', 'https'],
      ['Expect', '100-continue'],
      ['Content-Length', '3'],
    ]);
    expect(requestHeaders(req, { proto: 'http' })).toEqual(
      raw([
        ['Host', '8080-abc.localhost:3000'],
        ['Content-Length', '3'],
        ['X-Forwarded-For', '203.0.113.9, 192.0.2.1'],
        ['X-Forwarded-Proto', 'http'],
        ['X-Forwarded-Host', '8080-abc.localhost:3000'],
      ]),
    );
  });

  it('keeps a body of unknown length chunked, and asks to switch only for an upgrade', () => {
    const chunked = message([
      ['Host', 'h'],
      ['Transfer-Encoding', 'chunked'],
    ]);
    expect(requestHeaders(chunked, { proto: 'http' })).toContain('Transfer-Encoding');
    expect(hasBody(chunked)).toBe(true);
    expect(hasBody(message([['Content-Length', '0']]))).toBe(false);
    expect(hasBody(message([]))).toBe(false);

    const ws = message([
      ['Host', 'h'],
      ['Connection', 'Upgrade'],
      ['Upgrade', 'websocket'],
    ]);
    expect(requestHeaders(ws, { proto: 'http', upgrade: true }).slice(-4)).toEqual(
      raw([
        ['Connection', 'Upgrade'],
        ['Upgrade', 'websocket'],
      ]),
    );
    expect(requestHeaders(ws, { proto: 'http' })).not.toContain('Upgrade');
  });
});
