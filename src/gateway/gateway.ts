import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Envd } from '../envd/index.ts';
import type { Manager } from '../manager/manager.ts';
import { routeOf } from './route.ts';

/** The port envd listens on in an E2B sandbox; the SDK names it in E2b-Sandbox-Port. */
export const ENVD_PORT = 49983;

function sendBadGateway(res: ServerResponse, body: Record<string, unknown>): void {
  res.writeHead(502, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ ...body, code: 502 }));
}

/**
 * One HTTP listener for everything: the control API and every sandbox's envd. A request for
 * a sandbox that is unknown, killed or timed out gets upstream's 502 body, which the SDK
 * reads as "sandbox gone". When a sandbox is killed, its open connections are destroyed so
 * that streams end the way the SDK expects (spec 1.5).
 */
export function createGateway(opts: { manager: Manager; envd: Envd; api: RequestListener }): RequestListener {
  const { manager, envd, api } = opts;
  const sockets = new Map<string, Set<Socket>>();

  manager.events.on('killed', (id) => {
    for (const socket of sockets.get(id) ?? []) socket.destroy();
    sockets.delete(id);
  });

  function track(id: string, req: IncomingMessage): void {
    const socket = req.socket;
    let set = sockets.get(id);
    if (!set) sockets.set(id, (set = new Set()));
    if (set.has(socket)) return;
    set.add(socket);
    socket.once('close', () => {
      set.delete(socket);
      if (set.size === 0 && sockets.get(id) === set) sockets.delete(id);
    });
  }

  return (req, res) => {
    const target = routeOf(req.headers);
    if (target.kind === 'api') return api(req, res);
    const { sandboxId, port } = target;
    try {
      manager.get(sandboxId);
    } catch {
      return sendBadGateway(res, { sandboxId, message: 'The sandbox was not found' });
    }
    track(sandboxId, req);
    if (port === ENVD_PORT) return envd.handle(req, res, sandboxId);
    return sendBadGateway(res, { sandboxId, message: 'The sandbox is running but port is not open', port });
  };
}
