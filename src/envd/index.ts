import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ConnectRouter } from '@connectrpc/connect';
import { connectNodeAdapter } from '@connectrpc/connect-node';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import { bindSandbox, contextValues } from './context.ts';
import type { FastStreamHandler } from './fast-stream.ts';
import { httpRoutes } from './http.ts';

export interface EnvdDeps {
  manager: Manager;
  log: Logger;
}

/** envd as Cove serves it for every sandbox: Connect services plus a few HTTP endpoints. */
export interface Envd {
  /** Serves one request for sandbox `id` (the gateway checked that it exists). */
  handle(req: IncomingMessage, res: ServerResponse, id: string): void;
}

/** A service registers its RPCs on the router; each file of envd/process and envd/filesystem is one RPC.
 * A hot RPC may also register a fast path by its URL path (fast-stream.ts). */
export type ServiceRegistration = (
  router: ConnectRouter,
  deps: EnvdDeps,
  fast: Map<string, FastStreamHandler>,
) => void;

export function createEnvd(deps: EnvdDeps, services: ServiceRegistration[]): Envd {
  const http = httpRoutes(deps);
  const fast = new Map<string, FastStreamHandler>();
  const connect = connectNodeAdapter({
    routes: (router) => {
      for (const register of services) register(router, deps, fast);
    },
    // Cove serves HTTP/1.1 only: the requests are IncomingMessages.
    contextValues: (req) => contextValues(req as IncomingMessage),
    // Everything that is not an RPC: /health, /files, /envs, /metrics.
    fallback: (req, res) => http(req as IncomingMessage, res as ServerResponse),
  });
  return {
    handle(req, res, id) {
      bindSandbox(req, id);
      if (!http.authorized(req, res, id)) return;
      if (fast.get(req.url ?? '')?.(req, res, contextValues(req))) return;
      connect(req, res);
    },
  };
}
