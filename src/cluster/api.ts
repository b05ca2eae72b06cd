import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { CoveError, httpStatus } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { signedSandbox } from '../gateway/signed.ts';
import { requestIdFrom, runInRequest } from '../core/request-context.ts';
import { sandboxNotFound, sendJson } from '../gateway/reply.ts';
import { routeOf } from '../gateway/route.ts';
import { hashApiKey, newApiKey } from '../keys/keys.ts';
import { nodeSecret, NODE_NAME, TOKEN_HEADER, verify } from './auth.ts';
import { createForwarder, readBody } from './forward.ts';
import { clusterRoutes } from './routes.ts';
import { createSealer, SECRET_AT_REST, SECRET_TRANSIT } from './seal.ts';
import { clusterSecrets } from './secrets.ts';
import type { ClusterStore, Heartbeat } from './store.ts';

export interface ApiOptions {
  store: ClusterStore;
  clusterSecret: string;
  host: string;
  port: number;
  /** COVE_DOMAIN: sandbox hosts `<port>-<id>.<domain>`; unset: `localhost:<port>` in replies, any such host routed. */
  domain?: string | undefined;
  /** A node silent this long is not placed on, and then marked lost with its sandboxes. */
  staleMs: number;
  /** How long a sandbox a node runs may stay unplaced before it is removed (store.ts PLACEMENT_GRACE_MS). */
  placementGraceMs?: number;
  log: Logger;
  /** A key to accept (stored when missing); tests pass one. */
  apiKey?: string;
}

export interface CoveApi {
  url: string;
  domain: string;
  /** A key this start minted because the store held none (printed once), or opts.apiKey. */
  apiKey?: string;
  close(): Promise<void>;
}

/**
 * `cove api`: a stateless replica. It keeps nothing of its own: keys, nodes and where each
 * sandbox runs are in the cluster store, so any number of replicas serve the same cluster and
 * one that dies loses nothing. It checks API keys, places creates on nodes, forwards each
 * sandbox's API calls and traffic to the node that holds it, takes the nodes' heartbeats and
 * marks silent nodes lost.
 */
export async function startApi(opts: ApiOptions): Promise<CoveApi> {
  const { store, log } = opts;
  let apiKey = opts.apiKey;
  if (apiKey !== undefined) {
    if (!(await store.apiKeyByHash(hashApiKey(apiKey))))
      await store.insertApiKey(keyRecord(apiKey, 'seeded')).catch(() => undefined);
  } else if ((await store.countApiKeys()) === 0) {
    apiKey = newApiKey();
    await store.insertApiKey(keyRecord(apiKey, 'first'));
  }

  const forward = createForwarder(opts.clusterSecret);
  const server = createServer({ keepAliveTimeout: 65_000, shouldUpgradeCallback: (req) => isSandbox(req) });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  const domain = opts.domain ?? `localhost:${port}`;
  const sealer = createSealer(opts.clusterSecret);
  const secrets = clusterSecrets(store.db, createSealer(opts.clusterSecret, SECRET_AT_REST));
  const routes = clusterRoutes({ store, forward, domain, staleMs: opts.staleMs, log, sealer, secrets });

  function isSandbox(req: IncomingMessage): boolean {
    return routeOf(req, opts.domain).kind === 'sandbox';
  }

  // Opened tokens by sandbox id: a signed URL is checked against every running sandbox's.
  const opened = new Map<string, { sealed: string; plain: string | undefined }>();
  const tokens = {
    open(id: string, sealed: string): string | undefined {
      const hit = opened.get(id);
      if (hit?.sealed === sealed) return hit.plain;
      if (opened.size > 100_000) opened.clear();
      const plain = sealer.open(sealed);
      opened.set(id, { sealed, plain });
      return plain;
    },
  };

  /** The node that holds a running sandbox, or undefined (unknown, ended, or lost with its node). */
  async function ownerOf(id: string) {
    const p = await store.getPlacement(id);
    if (!p || p.state !== 'running') return undefined;
    return routes.node(p.node);
  }

  /** The node that signed a request whose body names it, or undefined. */
  function signedBy(req: IncomingMessage, body: { name?: unknown } | null): string | undefined {
    const name = typeof body?.name === 'string' && NODE_NAME.test(body.name) ? body.name : undefined;
    const claims =
      name && verify(nodeSecret(opts.clusterSecret, name), 'node-to-api', req.headers[TOKEN_HEADER]);
    return name && claims && claims.node === name ? name : undefined;
  }
  const badToken = (res: ServerResponse) => sendJson(res, 401, { code: 401, message: 'bad node token' });

  async function heartbeat(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = JSON.parse((await readBody(req)).toString('utf8')) as Heartbeat;
    const name = signedBy(req, body);
    if (!name) return badToken(res);
    if (
      !/^https?:\/\//.test(String(body.url)) ||
      !Array.isArray(body.sandboxes) ||
      !Array.isArray(body.templates)
    )
      return sendJson(res, 400, { code: 400, message: 'malformed heartbeat' });
    const reply = await store.heartbeat(
      {
        name,
        url: body.url,
        slots: Number(body.slots) || 0,
        free: Number(body.free) || 0,
        templates: body.templates.filter((t) => typeof t === 'string'),
        draining: body.draining === true,
        sandboxes: body.sandboxes.filter((s) => typeof s?.id === 'string' && typeof s.startedAt === 'number'),
      },
      Date.now(),
      opts.placementGraceMs,
    );
    if (reply.ignored.length > 0)
      log.warn({ node: name, ids: reply.ignored }, 'node claims sandboxes it does not hold');
    sendJson(res, 200, { ...reply });
  }

  /**
   * A node's egress proxy asks for a secret's value to inject for one of its sandboxes: only
   * for a sandbox placed on that node, and only a secret of the key that created it, so a node
   * learns no secret of a sandbox it does not run. Sealed with that node's secret on the way.
   */
  async function secretForNode(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = JSON.parse((await readBody(req)).toString('utf8')) as Record<string, unknown> | null;
    const name = signedBy(req, body);
    if (!name) return badToken(res);
    const p = typeof body?.sandbox === 'string' ? await store.getPlacement(body.sandbox) : undefined;
    const secret = typeof body?.secret === 'string' ? body.secret : '';
    if (!p || p.node !== name || p.state !== 'running' || !p.keyId)
      return sendJson(res, 404, { code: 404, message: `secret ${secret} not found` });
    const value = await secrets.value(p.keyId, secret);
    const transit = createSealer(nodeSecret(opts.clusterSecret, name), SECRET_TRANSIT);
    sendJson(res, 200, { sealed: transit.seal(value) });
  }

  /** A node places a sandbox it made without a create through a replica (an MCP tool's: node.ts). */
  async function placeForNode(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = JSON.parse((await readBody(req)).toString('utf8')) as Record<string, unknown> | null;
    const name = signedBy(req, body);
    if (!name) return badToken(res);
    const { id, keyId, template } = body ?? {};
    if (typeof id !== 'string' || !/^[a-z0-9]{1,64}$/.test(id) || typeof keyId !== 'string')
      return sendJson(res, 400, { code: 400, message: 'malformed placement' });
    await store
      .insertPlacement({
        id,
        node: name,
        keyId,
        template: typeof template === 'string' ? template : '',
        state: 'running',
        createdAt: Date.now(),
        envdToken: null,
      })
      .catch((err: unknown) => {
        if (!(err instanceof CoveError && err.code === 'already_exists')) throw err;
      });
    // A sandbox already placed on another node stays there: a node's word counts for its own only.
    sendJson(res, 200, { placed: (await store.getPlacement(id))?.node === name });
  }

  async function request(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const target = routeOf(req, opts.domain);
    if (target.kind === 'invalid') return sendJson(res, 400, { message: target.message });
    if (target.kind === 'signed-files') {
      // The URL names no sandbox: the one whose token reproduces its signature (the node checks it again).
      const running = (await store.listPlacements()).filter((p) => p.state === 'running' && p.envdToken);
      const id = signedSandbox(
        req.method,
        req.url,
        running.map((p) => ({ id: p.id, envdAccessToken: tokens.open(p.id, p.envdToken!) })),
      );
      const node = id && (await ownerOf(id));
      if (!node) return sendJson(res, 401, { code: 401, message: 'invalid or expired signature' });
      return forward.request(req, res, node);
    }
    if (target.kind === 'sandbox') {
      const node = await ownerOf(target.sandboxId);
      if (!node) return sendJson(res, 502, sandboxNotFound(target.sandboxId));
      return forward.request(req, res, node);
    }
    const path = new URL(req.url ?? '/', 'http://api').pathname;
    if (req.method === 'POST' && path === '/cluster/v1/heartbeat') return heartbeat(req, res);
    if (req.method === 'POST' && path === '/cluster/v1/secret') return secretForNode(req, res);
    if (req.method === 'POST' && path === '/cluster/v1/placements') return placeForNode(req, res);
    if (path === '/health') return sendJson(res, 200, { status: 'ok' });
    return routes.api(req, res);
  }

  server.on('request', (req, res) =>
    runInRequest(
      { requestId: requestIdFrom(req.headers['x-request-id']) },
      () =>
        void request(req, res).catch((err: unknown) => {
          const status =
            err instanceof CoveError
              ? httpStatus[err.code]
              : ((err as { status?: number }).status ?? (err instanceof SyntaxError ? 400 : 503));
          if (status >= 500) log.warn({ err }, 'cluster API request failed');
          if (!res.headersSent) sendJson(res, status, { code: status, message: (err as Error).message });
          else res.destroy();
        }),
    ),
  );
  server.on('upgrade', (req, socket, head) => {
    socket.on('error', () => socket.destroy());
    const target = routeOf(req, opts.domain);
    if (target.kind !== 'sandbox') return void socket.destroy();
    ownerOf(target.sandboxId).then(
      (node) => (node ? forward.upgrade(req, socket, head, node) : socket.destroy()),
      () => socket.destroy(),
    );
  });

  // Every replica sweeps; markLost is idempotent, so they may overlap.
  const sweeper = setInterval(
    () => {
      store
        .markLost(Date.now() - opts.staleMs)
        .then(
          (lost) =>
            lost.length > 0 && log.warn({ nodes: lost }, 'nodes lost: their sandboxes are marked lost'),
        )
        .catch((err: unknown) => log.warn({ err }, 'sweep failed'));
    },
    Math.max(250, opts.staleMs / 4),
  );

  return {
    url: `http://${opts.host}:${port}`,
    domain,
    ...(apiKey !== undefined && { apiKey }),
    async close() {
      clearInterval(sweeper);
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      forward.close();
      server.closeAllConnections();
      await closed;
    },
  };
}

function keyRecord(key: string, name: string) {
  return {
    id: `key_${randomBytes(6).toString('hex')}`,
    name,
    hash: hashApiKey(key),
    mask: `${key.slice(0, 8)}…`,
    createdAt: Date.now(),
  };
}
