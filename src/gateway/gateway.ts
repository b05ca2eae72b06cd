import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Envd } from '../envd/index.ts';
import type { Manager, SandboxInfo } from '../manager/manager.ts';
import { ingress } from './ingress.ts';
import { createPortProxy, type ProxyOptions } from './proxy.ts';
import { sandboxNotFound, sendJson, writeJson } from './reply.ts';
import { routeOf } from './route.ts';
import { signedSandbox } from './signed.ts';

/** The port envd listens on in an E2B sandbox; the SDK names it in E2b-Sandbox-Port. */
export const ENVD_PORT = 49983;

/**
 * The one port's three hooks, for `createServer`: `shouldUpgrade` as its
 * `shouldUpgradeCallback`, `request` for 'request' and `upgrade` for 'upgrade'.
 */
export interface Gateway {
  request: RequestListener;
  /** True for an upgrade to a sandbox's own server: only those go to `upgrade`. Others
   * (an h2c upgrade to the API, say) are served as plain requests, as without the hook. */
  shouldUpgrade: (req: IncomingMessage) => boolean;
  upgrade: (req: IncomingMessage, socket: Duplex, head: Buffer) => void;
  /** Ends every proxied connection, WebSockets included (server.closeAllConnections() no
   * longer sees an upgraded socket), and the pools. Sandboxes keep running. */
  close: () => void;
}

/**
 * One HTTP listener for everything: the control API, every sandbox's envd and the servers
 * inside sandboxes (the port proxy). A request for a sandbox that is unknown, killed or timed
 * out gets upstream's 502 body (key order included), which the SDK reads as "sandbox gone".
 * When a sandbox stops, the requests and WebSockets in flight for it lose their connections,
 * so that streams end the way the SDK expects (spec 1.5), and its connection pool is closed.
 */
export function createGateway(opts: {
  manager: Manager;
  envd: Envd;
  api: RequestListener;
  /** COVE_DOMAIN when set: only `<port>-<id>.<domain>` hosts are sandbox hosts then. */
  domain?: string | undefined;
  proxy?: ProxyOptions;
}): Gateway {
  const { manager, envd, api } = opts;
  const proxy = createPortProxy(opts.proxy);
  // Connections in flight per sandbox: a request's socket while it is served, or an upgraded
  // socket for its life. Tracked per request, not per connection: the SDK keeps one
  // keep-alive pool for the envd traffic of all sandboxes, so a socket that once served a
  // killed sandbox may carry another sandbox's stream by now.
  const inflight = new Map<string, Set<{ socket: Duplex }>>();

  const drop = (id: string) => {
    for (const entry of inflight.get(id) ?? []) entry.socket.destroy();
    inflight.delete(id);
    proxy.drop(id);
  };
  manager.events.on('killed', drop);
  manager.events.on('paused', drop);

  function track(id: string, entry: { socket: Duplex }, done: { once(e: 'close', f: () => void): unknown }) {
    let set = inflight.get(id);
    if (!set) inflight.set(id, (set = new Set()));
    set.add(entry);
    done.once('close', () => {
      set.delete(entry);
      if (set.size === 0 && inflight.get(id) === set) inflight.delete(id);
    });
  }

  /** The sandbox, or undefined when it is not being served (not found, stopping, paused:
   * upstream answers a paused sandbox's traffic as it does an unknown one's). */
  function sandboxOf(sandboxId: string): SandboxInfo | undefined {
    try {
      const info = manager.get(sandboxId);
      return info.state === 'running' ? info : undefined;
    } catch {
      return undefined;
    }
  }

  /** The sandbox once it runs: a paused one with autoResume is resumed first. */
  async function wake(sandboxId: string): Promise<SandboxInfo | undefined> {
    const ok = await manager.wake(sandboxId).catch(() => false);
    return ok ? sandboxOf(sandboxId) : undefined;
  }

  function toSandbox(req: IncomingMessage, res: ServerResponse, sandboxId: string, port: number): void {
    const sandbox = sandboxOf(sandboxId);
    if (sandbox === undefined) {
      void wake(sandboxId).then((woken) => {
        if (woken === undefined) return sendJson(res, 502, sandboxNotFound(sandboxId));
        serve(req, res, woken, port);
      });
      return;
    }
    serve(req, res, sandbox, port);
  }

  function serve(req: IncomingMessage, res: ServerResponse, sandbox: SandboxInfo, port: number): void {
    const sandboxId = sandbox.id;
    if (port === ENVD_PORT) {
      track(sandboxId, req, res);
      return envd.handle(req, res, sandboxId);
    }
    const decided = ingress(sandbox, port, req.headers);
    if ('denied' in decided) return sendJson(res, 403, decided.denied);
    track(sandboxId, req, res);
    proxy.request(req, res, decided.target);
  }

  function isProxiedUpgrade(req: IncomingMessage): boolean {
    const target = routeOf(req, opts.domain);
    return target.kind === 'sandbox' && target.port !== ENVD_PORT;
  }

  return {
    request(req, res) {
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
    },

    shouldUpgrade: isProxiedUpgrade,

    upgrade(req, socket, head) {
      // Node hands the socket over without an error listener: an unhandled reset would crash.
      socket.on('error', () => socket.destroy());
      const target = routeOf(req, opts.domain);
      // shouldUpgrade let only sandbox ports other than envd's through.
      if (target.kind !== 'sandbox') return void socket.destroy();
      const go = (sandbox: SandboxInfo | undefined) => {
        if (sandbox === undefined) return writeJson(socket, 502, sandboxNotFound(target.sandboxId));
        const decided = ingress(sandbox, target.port, req.headers);
        if ('denied' in decided) return writeJson(socket, 403, decided.denied);
        track(target.sandboxId, { socket }, socket);
        proxy.upgrade(req, socket, head, decided.target);
      };
      const sandbox = sandboxOf(target.sandboxId);
      if (sandbox === undefined) void wake(target.sandboxId).then(go);
      else go(sandbox);
    },

    close() {
      for (const set of inflight.values()) for (const entry of set) entry.socket.destroy();
      inflight.clear();
      proxy.close();
    },
  };
}
