import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Envd } from '../envd/index.ts';
import type { Manager } from '../manager/manager.ts';
import { routeOf } from './route.ts';
import { signedSandbox } from './signed.ts';

/** The port envd listens on in an E2B sandbox; the SDK names it in E2b-Sandbox-Port. */
export const ENVD_PORT = 49983;

function sendJson(res: ServerResponse, status: number, body: Record<string, unknown>): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ ...body, code: status }));
}

/**
 * One HTTP listener for everything: the control API and every sandbox's envd. A request for
 * a sandbox that is unknown, killed or timed out gets upstream's 502 body (key order
 * included), which the SDK reads as "sandbox gone". When a sandbox stops, the requests in
 * flight for it lose their connections, so that streams end the way the SDK expects (spec 1.5).
 */
export function createGateway(opts: {
  manager: Manager;
  envd: Envd;
  api: RequestListener;
  domain?: string | undefined;
}): RequestListener {
  const { manager, envd, api } = opts;
  // Requests in flight per sandbox. Tracked per request, not per connection: the SDK keeps
  // one keep-alive pool for the envd traffic of all sandboxes, so a socket that once served
  // a killed sandbox may carry another sandbox's stream by now.
  const inflight = new Map<string, Set<IncomingMessage>>();

  manager.events.on('killed', (id) => {
    for (const req of inflight.get(id) ?? []) req.socket.destroy();
    inflight.delete(id);
  });

  function track(id: string, req: IncomingMessage, res: ServerResponse): void {
    let set = inflight.get(id);
    if (!set) inflight.set(id, (set = new Set()));
    set.add(req);
    res.once('close', () => {
      set.delete(req);
      if (set.size === 0 && inflight.get(id) === set) inflight.delete(id);
    });
  }

  function toSandbox(req: IncomingMessage, res: ServerResponse, sandboxId: string, port: number): void {
    try {
      manager.get(sandboxId);
    } catch {
      return sendJson(res, 502, { sandboxId, message: 'The sandbox was not found' });
    }
    track(sandboxId, req, res);
    if (port === ENVD_PORT) return envd.handle(req, res, sandboxId);
    return sendJson(res, 502, { sandboxId, message: 'The sandbox is running but port is not open', port });
  }

  return (req, res) => {
    const target = routeOf(req, opts.domain);
    switch (target.kind) {
      case 'api':
        return api(req, res);
      case 'invalid':
        return sendJson(res, 400, { message: target.message });
      case 'sandbox':
        return toSandbox(req, res, target.sandboxId, target.port);
      case 'signed-files': {
        const id = signedSandbox(req.method, req.url, manager.list());
        if (!id) return sendJson(res, 401, { message: 'invalid signature' });
        return toSandbox(req, res, id, ENVD_PORT);
      }
    }
  };
}
