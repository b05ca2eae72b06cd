import type { IncomingMessage, ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import type { EnvdDeps } from './index.ts';
import { sandboxOfRequest } from './context.ts';
import { download } from './files/download.ts';
import { upload } from './files/upload.ts';

/** envd's REST error body (internal/api/error.go): `{code, message}` as JSON. */
export function sendError(res: ServerResponse, status: number, message: string): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8' });
  res.end(JSON.stringify({ code: status, message }));
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Paths that carry their own authorization (/files: token or signature) or none (/health). */
const OPEN_PATHS = new Set(['/health', '/files']);

export type HttpHandler = ((req: IncomingMessage, res: ServerResponse) => void) & {
  /** envd's access-token rule (internal/api/auth.go); answers 401 itself when it fails. */
  authorized(req: IncomingMessage, res: ServerResponse, id: string): boolean;
};

/** The non-RPC endpoints. /files lives in envd/files (registered here by path). */
export function httpRoutes(deps: EnvdDeps): HttpHandler {
  const routes = new Map<
    string,
    (req: IncomingMessage, res: ServerResponse, id: string) => void | Promise<void>
  >([
    [
      'GET /health',
      (_req, res) => {
        res.writeHead(204, { 'cache-control': 'no-store' });
        res.end();
      },
    ],
    // /files authorizes itself (files/signing.ts): an access token header or a signed URL.
    ['GET /files', (req, res, id) => download(deps, req, res, id)],
    ['POST /files', (req, res, id) => upload(deps, req, res, id)],
    [
      'GET /envs',
      (_req, res, id) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(deps.manager.envVars(id)));
      },
    ],
  ]);

  const handler = ((req: IncomingMessage, res: ServerResponse) => {
    const path = new URL(req.url ?? '/', 'http://envd').pathname;
    const route = routes.get(`${req.method} ${path}`);
    if (!route) return sendError(res, 404, `no route ${req.method} ${path}`);
    Promise.resolve(route(req, res, sandboxOfRequest(req))).catch((err: unknown) => {
      deps.log.error({ err, path }, 'envd http route failed');
      sendError(res, 500, 'internal error');
    });
  }) as HttpHandler;

  handler.authorized = (req, res, id) => {
    const path = new URL(req.url ?? '/', 'http://envd').pathname;
    const token = deps.manager.get(id).envdAccessToken;
    if (!token || OPEN_PATHS.has(path)) return true;
    const given = req.headers['x-access-token'];
    if (typeof given === 'string' && sameToken(given, token)) return true;
    sendError(
      res,
      401,
      'unauthorized access, please provide a valid access token or method signing if supported',
    );
    return false;
  };

  return handler;
}
