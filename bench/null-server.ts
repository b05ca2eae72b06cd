// The SDK's own ceiling: a loopback server that speaks just enough of E2B's API and envd for
// `Sandbox.create()`, `commands.run()`, `kill()`, `files.write()` and `files.read()`, and does
// no work behind them: creates answer a canned sandbox, a command answers a canned start and
// end, an upload is read and dropped, a download is a buffer allocated once. Driven by the
// same SDK child as Cove (bench/e2b-client.ts), it measures what the `e2b` SDK itself costs
// per operation on this host; Cove cannot be faster than that through the SDK.
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { ENVD_VERSION } from '../src/api/wire.ts';

export interface NullServer {
  url: string;
  apiKey: string;
  close(): Promise<void>;
}

/** One Connect envelope (flags, big-endian length, JSON message): Connect's streaming framing. */
function envelope(flags: number, json: string): Buffer {
  const body = Buffer.from(json);
  const head = Buffer.alloc(5);
  head.writeUInt8(flags, 0);
  head.writeUInt32BE(body.length, 1);
  return Buffer.concat([head, body]);
}

/** process.Start's whole reply for `true`: start{pid}, end{exit 0}, end of stream. */
const START_REPLY = Buffer.concat([
  envelope(0, JSON.stringify({ event: { start: { pid: 2 } } })),
  envelope(0, JSON.stringify({ event: { end: { exitCode: 0, exited: true, status: 'exit status 0' } } })),
  envelope(2, '{}'),
]);

function drain(req: IncomingMessage): Promise<void> {
  req.resume();
  return once(req, 'end').then(() => undefined);
}

/**
 * `fileBytes`: the size GET /files answers with (the bench's file size), random bytes.
 * `gzipStored`: answer downloads as Cove did before (gzip of stored blocks when the client
 * accepts gzip, which undici's fetch always does) instead of identity.
 */
export async function startNullServer(opts: {
  fileBytes: number;
  gzipStored?: boolean;
}): Promise<NullServer> {
  const file = randomBytes(opts.fileBytes);
  const gzipped = opts.gzipStored ? gzipSync(file, { level: 0 }) : undefined;
  const apiKey = `e2b_${'0'.repeat(40)}`;
  let n = 0;

  function serve(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const route = `${req.method} ${path}`;
    if (route === 'POST /v2/sandboxes' || route === 'POST /sandboxes') {
      void drain(req).then(() => {
        const id = `null${(n++).toString(36).padStart(16, '0')}`;
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            sandboxID: id,
            templateID: 'base',
            alias: 'base',
            clientID: 'cove',
            envdVersion: ENVD_VERSION,
            envdAccessToken: 'null-token',
            trafficAccessToken: null,
            domain: null,
          }),
        );
      });
      return;
    }
    if (req.method === 'DELETE' && path?.startsWith('/sandboxes/')) {
      res.writeHead(204);
      return void res.end();
    }
    if (route === 'POST /process.Process/Start') {
      void drain(req).then(() => {
        res.writeHead(200, { 'content-type': 'application/connect+json' });
        res.end(START_REPLY);
      });
      return;
    }
    if (route === 'POST /files') {
      void drain(req).then(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify([{ path: '/tmp/coveb-file.bin', name: 'coveb-file.bin', type: 'file' }]));
      });
      return;
    }
    if (route === 'GET /files') {
      const gzip = gzipped && /\bgzip\b/.test(req.headers['accept-encoding'] ?? '');
      const body = gzip ? gzipped : file;
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': String(body.length),
        ...(gzip && { 'content-encoding': 'gzip' }),
      });
      return void res.end(body);
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ code: 404, message: `null server: no ${route}` }));
  }

  const server = createServer(serve);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    apiKey,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
