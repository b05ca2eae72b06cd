import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../core/log.ts';
import { currentRequest } from '../core/request-context.ts';
import { sendJson } from '../gateway/reply.ts';
import { hashApiKey } from '../keys/keys.ts';
import { CoveError } from '../core/errors.ts';
import { readBody, unreachable, type createForwarder, type NodeReply } from './forward.ts';
import { rankNodes } from './placement.ts';
import { gatheredRoutes } from './gathered.ts';
import { listSandboxes } from './list.ts';
import { mcpRoute } from './mcp.ts';
import { resourceRoutes } from './resources.ts';
import type { Sealer } from './seal.ts';
import type { ClusterSecrets } from './secrets.ts';
import type { ClusterStore, NodeRecord } from './store.ts';

interface Deps {
  store: ClusterStore;
  forward: ReturnType<typeof createForwarder>;
  /** This replica's sandbox domain: create and connect replies name it. */
  domain: string;
  staleMs: number;
  log: Logger;
  sealer: Sealer;
  secrets: ClusterSecrets;
}

/** How long a node that refused a connection is left out of placement by this replica. */
const SUSPECT_MS = 5_000;

/**
 * The control API of a replica: the key check, then creates placed on a node, lists gathered
 * from every node (each keeping only the sandboxes placed on it: a node's word about another
 * node's sandbox counts for nothing), and every call about one sandbox forwarded to its node.
 */
export function clusterRoutes(deps: Deps) {
  const { store, forward, log } = deps;
  // Creates in flight, and those placed since the node's last heartbeat (which its `free`
  // does not count yet): without them a burst would go to whichever node looked emptiest.
  const inflight = new Map<string, number>();
  const placed = new Map<string, { lastSeen: number; count: number }>();
  const pending = (n: NodeRecord) => {
    const p = placed.get(n.name);
    return p && p.lastSeen === n.lastSeen ? p.count : 0;
  };
  const busy = (all: NodeRecord[]) =>
    new Map(all.map((n) => [n.name, (inflight.get(n.name) ?? 0) + pending(n)]));
  const suspect = new Map<string, number>();
  // Nodes change once per heartbeat: one read serves the requests of the next half second.
  let nodes: { at: number; list: Promise<NodeRecord[]> } | undefined;
  const listNodes = () => {
    const now = Date.now();
    if (!nodes || nodes.at < now - 500) {
      const list = store.listNodes();
      nodes = { at: now, list };
      list.catch(() => (nodes = undefined));
    }
    return nodes.list;
  };
  const node = async (name: string) => (await listNodes()).find((n) => n.name === name);

  function reply(res: ServerResponse, r: NodeReply): void {
    let body = r.body;
    if (r.headers['content-type']?.includes('json') && body.includes('"domain"')) {
      const json = JSON.parse(body.toString('utf8')) as unknown;
      for (const item of Array.isArray(json) ? json : [json]) {
        const o = item as Record<string, unknown> | null;
        const target = o && typeof o.sandbox === 'object' ? (o.sandbox as Record<string, unknown>) : o;
        if (target && typeof target === 'object' && 'domain' in target) target.domain = deps.domain;
      }
      body = Buffer.from(JSON.stringify(json));
    }
    res.writeHead(r.status, { ...r.headers, 'content-length': body.length }).end(body);
  }

  async function create(
    req: IncomingMessage,
    res: ServerResponse,
    keyId: string,
    path: string,
  ): Promise<void> {
    const body = await readBody(req);
    const parsed = JSON.parse(body.toString('utf8') || '{}') as {
      templateID?: unknown;
      volumeMounts?: unknown;
    };
    const template = typeof parsed.templateID === 'string' ? parsed.templateID : 'base';
    const all = await listNodes();
    let candidates = rankNodes(all, template, {
      now: Date.now(),
      staleMs: deps.staleMs,
      inflight: busy(all),
      suspect,
    });
    // A create that mounts volumes or starts from a snapshot runs where they are.
    const pinned = await resources.pinned(keyId, parsed);
    if (pinned !== undefined) {
      candidates = candidates.filter((n) => n.name === pinned);
      if (candidates.length === 0)
        throw new CoveError(
          'unavailable',
          `node ${pinned}, which holds this create's volumes or snapshot, takes no sandboxes now (full, draining, lost or unreachable)`,
        );
    }
    for (const n of candidates) {
      inflight.set(n.name, (inflight.get(n.name) ?? 0) + 1);
      let r: NodeReply;
      try {
        r = await forward.call(n, 'POST', path, req, keyId, body);
      } catch (err) {
        if (!unreachable(err)) throw err;
        log.warn({ node: n.name, err }, 'node unreachable: placing elsewhere');
        suspect.set(n.name, Date.now() + SUSPECT_MS);
        continue;
      } finally {
        inflight.set(n.name, (inflight.get(n.name) ?? 1) - 1);
      }
      // Full (or its build queue is): the next node may have room.
      if (r.status === 429 || r.status === 503) continue;
      if (r.status === 201 || r.status === 200) {
        placed.set(n.name, { lastSeen: n.lastSeen, count: pending(n) + 1 });
        const made = JSON.parse(r.body.toString('utf8')) as { sandboxID: string; envdAccessToken?: unknown };
        const id = made.sandboxID;
        try {
          await store.insertPlacement({
            id,
            node: n.name,
            keyId,
            template,
            state: 'running',
            createdAt: Date.now(),
            envdToken:
              typeof made.envdAccessToken === 'string' ? deps.sealer.seal(made.envdAccessToken) : null,
          });
        } catch (err) {
          // The node placed it first (an MCP session's sandbox: node.ts): recorded all the same.
          const placedThere =
            err instanceof CoveError &&
            err.code === 'already_exists' &&
            (await store.getPlacement(id))?.node === n.name;
          if (!placedThere) {
            // Not recorded, so never acknowledged: the node must not keep it.
            await forward.call(n, 'DELETE', `/sandboxes/${id}`, req, keyId).catch(() => undefined);
            throw err;
          }
        }
      }
      return reply(res, r);
    }
    sendJson(res, 503, {
      code: 503,
      message: 'no node has room for a sandbox now (all full, draining or unreachable)',
    });
  }

  /** A call about one sandbox, to the node that holds it. */
  async function one(
    req: IncomingMessage,
    res: ServerResponse,
    keyId: string,
    id: string,
    url: string,
  ): Promise<void> {
    const p = await store.getPlacement(id);
    const n = p && (await node(p.node));
    if (!p || !n) return sendJson(res, 404, { code: 404, message: `sandbox ${id} not found` });
    if (p.state === 'lost')
      return sendJson(res, 404, { code: 404, message: `sandbox ${id} was lost with its node ${p.node}` });
    const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : await readBody(req);
    const r = await forward.call(n, req.method ?? 'GET', url, req, keyId, body);
    const path = new URL(url, 'http://x').pathname;
    await resources.afterSandboxCall(path, req.method ?? 'GET', r, n, keyId);
    if (req.method === 'POST' && r.status === 201 && path.endsWith('/fork')) await placeForks(r, n, keyId);
    if (
      req.method === 'DELETE' &&
      /^(\/v2)?\/sandboxes\/[a-z0-9]+$/.test(path) &&
      (r.status < 300 || r.status === 404)
    )
      await store.deletePlacement(id, n.name);
    reply(res, r);
  }

  /** Forks run on their source's node: placed there, or that node would remove them. */
  async function placeForks(r: NodeReply, n: NodeRecord, keyId: string): Promise<void> {
    const results = JSON.parse(r.body.toString('utf8')) as Array<{
      sandbox?: { sandboxID: string; templateID?: string; envdAccessToken?: string };
    }>;
    for (const { sandbox } of results)
      if (sandbox)
        await store.insertPlacement({
          id: sandbox.sandboxID,
          node: n.name,
          keyId,
          template: sandbox.templateID ?? '',
          state: 'running',
          createdAt: Date.now(),
          envdToken: sandbox.envdAccessToken ? deps.sealer.seal(sandbox.envdAccessToken) : null,
        });
  }

  /**
   * The cluster's own admin routes, behind the same key check: `GET /cluster/v1/nodes`, and
   * `POST`/`DELETE /cluster/v1/nodes/<name>/drain` (cove node drain | undrain).
   */
  async function admin(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
    if (req.method === 'GET' && path === '/cluster/v1/nodes') {
      const counts = new Map<string, number>();
      for (const p of await store.listPlacements()) counts.set(p.node, (counts.get(p.node) ?? 0) + 1);
      const list = (await store.listNodes()).map((n) => ({ ...n, sandboxes: counts.get(n.name) ?? 0 }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(list));
      return true;
    }
    const m = /^\/cluster\/v1\/nodes\/([a-z0-9][a-z0-9.-]{0,252})\/drain$/.exec(path);
    if (!m || (req.method !== 'POST' && req.method !== 'DELETE')) return false;
    if (!(await store.setDrain(m[1]!, req.method === 'POST')))
      throw new CoveError('not_found', `node ${m[1]} is not registered`);
    nodes = undefined; // placement sees the drain from the next create on
    const sandboxes = (await store.listPlacements(m[1])).filter((p) => p.state === 'running').length;
    sendJson(res, 200, { node: m[1], draining: req.method === 'POST', sandboxes });
    return true;
  }

  const ranked = async (template: string) =>
    rankNodes(await listNodes(), template, {
      now: Date.now(),
      staleMs: deps.staleMs,
      inflight,
      suspect: new Map(),
    });
  const live = async () => (await listNodes()).filter((n) => n.state !== 'lost');
  const resources = resourceRoutes({ store, forward, node, rank: ranked, live, reply });
  /** The node that holds a running sandbox, or undefined. */
  const ownerOf = async (id: string) => {
    const p = await store.getPlacement(id);
    return p?.state === 'running' ? node(p.node) : undefined;
  };
  const gathered = gatheredRoutes({
    store,
    forward,
    secrets: deps.secrets,
    live,
    ownerOf,
    anyNode: resources.anyNode,
    log,
  });
  const mcp = mcpRoute({ store, forward, node, anyNode: resources.anyNode, reply });

  return {
    node,
    async api(req: IncomingMessage, res: ServerResponse): Promise<void> {
      const unkeyed = new URL(req.url ?? '/', 'http://api').pathname;
      if (await resources.withoutKey(req, res, unkeyed)) return;
      // The console's page and scripts (they carry no key; the page asks for one), and the
      // workload identity's discovery document and keys.
      if (unkeyed === '/console' || unkeyed.startsWith('/console/') || unkeyed.startsWith('/.well-known/'))
        return gathered(req, res);
      const bearer = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '')?.[1];
      const key = req.headers['x-api-key'] ?? bearer;
      const record = typeof key === 'string' ? await store.apiKeyByHash(hashApiKey(key)) : undefined;
      if (!record)
        return sendJson(res, 401, {
          code: 401,
          message: key ? 'invalid API key' : 'missing API key: send it in the X-API-Key header',
        });
      const request = currentRequest();
      if (request) request.keyId = record.id;
      const url = req.url ?? '/';
      const path = new URL(url, 'http://api').pathname;
      if (req.method === 'POST' && (path === '/sandboxes' || path === '/v2/sandboxes'))
        return create(req, res, record.id, path);
      if (req.method === 'GET' && (path === '/sandboxes' || path === '/v2/sandboxes'))
        return listSandboxes({ store, forward, live }, req, res, record.id, url);
      if (path === '/sandboxes/metrics') return gathered(req, res); // "metrics" is no sandbox id
      const m = /^(?:\/v2)?\/sandboxes\/([a-z0-9]{1,64})(\/.*)?$/.exec(path);
      if (m) return one(req, res, record.id, m[1]!, url);
      if (path === '/mcp') return mcp(req, res, record.id);
      // The CLI's streaming exec, to the sandbox's node as it comes.
      const exec = /^\/cove\/v1\/sandboxes\/([a-z0-9]{1,64})\/exec$/.exec(path);
      if (exec) {
        const n = await ownerOf(exec[1]!);
        if (!n) return sendJson(res, 404, { code: 404, message: `sandbox ${exec[1]} not found` });
        return forward.request(req, res, n, record.id);
      }
      if (await resources.withKey(req, res, record.id, url)) return;
      if (await admin(req, res, path)) return;
      // Served by the replica itself (secrets, keys, the console's gathered reads), or a 400.
      return gathered(req, res);
    },
  };
}
