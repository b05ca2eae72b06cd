import { readFile } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Hono } from 'hono';
import { CoveError } from '../core/errors.ts';

/** Where `npm run build:console` (run by scripts/setup.sh) writes the console's assets. */
export const CONSOLE_DIR = join(import.meta.dirname, '..', '..', 'dist', 'console');

const contentTypes: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/**
 * The console runs only its own bundled script and talks only to this origin. Sandboxes
 * supply much of what it shows (file names, command lines, log lines): should any of it ever
 * reach the DOM as markup, an injected script still could not run or send the key elsewhere.
 * Inline styles are allowed because xterm.js writes its theme and cell sizes into a `<style>`
 * element at run time (the terminal's text is invisible without it); a style cannot run code,
 * and with images, fonts and connections held to this origin it cannot send anything away.
 */
const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const securityHeaders = {
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

async function asset(dir: string, name: string): Promise<Buffer> {
  try {
    return await readFile(join(dir, name));
  } catch (err) {
    if (name === 'index.html')
      throw new CoveError('unavailable', 'the console is not built: run `npm run build:console`', {
        cause: err,
      });
    throw new CoveError('not_found', `no console asset ${name}`, { cause: err });
  }
}

/**
 * The web console's static files at `/console/` (src/console/web, built by Vite). They need
 * no key: the page asks for one and sends it in `X-API-Key` on every API call it makes, the
 * same calls and checks as the SDK's. Hashed assets are cached for good; the page never is.
 */
export function consoleRoutes(dir = CONSOLE_DIR): Hono {
  const app = new Hono();
  app.get('/console', (c) => c.redirect('/console/', 308));
  app.get('/console/', async (c) =>
    c.body(new Uint8Array(await asset(dir, 'index.html')), 200, {
      ...securityHeaders,
      'content-type': contentTypes['.html']!,
      'cache-control': 'no-store',
    }),
  );
  app.get('/console/assets/:name', async (c) => {
    const name = c.req.param('name');
    const type = contentTypes[extname(name)];
    if (!/^[\w-]+(\.[\w-]+)*$/.test(name) || type === undefined)
      throw new CoveError('not_found', `no console asset ${name}`);
    return c.body(new Uint8Array(await asset(join(dir, 'assets'), name)), 200, {
      ...securityHeaders,
      'content-type': type,
      'cache-control': 'public, max-age=31536000, immutable',
    });
  });
  return app;
}
