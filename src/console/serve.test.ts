import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Hono } from 'hono';
import { describe, expect, it } from 'vitest';
import { errorHandler } from '../api/errors.ts';
import { createLogger } from '../core/log.ts';
import { consoleRoutes } from './serve.ts';
import { scratchDir } from '../../test/scratch.ts';

function app(dir: string) {
  const a = new Hono();
  a.onError(errorHandler(createLogger('silent')));
  a.route('/', consoleRoutes(dir));
  return a;
}

describe('console assets', () => {
  const dir = scratchDir('cove-console-');
  mkdirSync(join(dir, 'assets'));
  writeFileSync(join(dir, 'index.html'), '<!doctype html><title>Cove console</title>');
  writeFileSync(join(dir, 'assets', 'index-abc.js'), 'console.log(1)');
  writeFileSync(join(dir, 'secret.txt'), 'no');

  it('serves the page with a strict CSP and no caching', async () => {
    const res = await app(dir).request('/console/');
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('Cove console');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    expect(res.headers.get('content-security-policy')).toContain("connect-src 'self'");
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect((await app(dir).request('/console')).headers.get('location')).toBe('/console/');
  });

  it('serves hashed assets for good, and nothing outside assets/', async () => {
    const res = await app(dir).request('/console/assets/index-abc.js');
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(res.headers.get('cache-control')).toContain('immutable');
    for (const path of [
      '/console/assets/..%2Fsecret.txt',
      '/console/assets/%2E%2E%2Findex.html',
      '/console/assets/missing.js',
      '/console/assets/index-abc.exe',
    ])
      expect((await app(dir).request(path)).status, path).toBe(404);
  });

  it('says how to build it when it is not built', async () => {
    const res = await app(join(dir, 'nothing')).request('/console/');
    expect(res.status).toBe(503);
    expect(((await res.json()) as { message: string }).message).toContain('npm run build:console');
  });
});
