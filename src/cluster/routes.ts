import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../core/log.ts';
import { currentRequest } from '../core/request-context.ts';
import { sendJson } from '../gateway/reply.ts';
import { hashApiKey } from '../keys/keys.ts';
import { readBody, unreachable, type createForwarder, type NodeReply } from './forward.ts';
import { rankNodes } from './placement.ts';
import type { ClusterStore, NodeRecord } from './store.ts';

interface Deps {
  store: ClusterStore;
  forward: ReturnType<typeof createForwarder>;
  /** This replica's sandbox domain: create and connect replies name it. */
  domain: string;
  staleMs: number;
  log: Logger;
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
      const json = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      if (typeof json === 'object' && json && 'domain' in json) {
        json.domain = deps.domain;
        body = Buffer.from(JSON.stringify(json));
      }
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
    const asked = (JSON.parse(body.toString('utf8') || '{}') as { templateID?: unknown }).templateID;
    const template = typeof asked === 'string' ? asked : 'base';
    const all = await listNodes();
    const candidates = rankNodes(all, template, {
      now: Date.now(),
      staleMs: deps.staleMs,
      inflight: busy(all),
      suspect,
    });
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
        const id = (JSON.parse(r.body.toString('utf8')) as { sandboxID: string }).sandboxID;
        try {
          await store.insertPlacement({
            id,
            node: n.name,
            keyId,
            template,
            state: 'running',
            createdAt: Date.now(),
          });
        } catch (err) {
          // Not recorded, so never acknowledged: the node must not keep it.
          await forward.call(n, 'DELETE', `/sandboxes/${id}`, req, keyId).catch(() => undefined);
          throw err;
        }
      }
      return reply(res, r);
    }
    sendJson(res, 503, {
      code: 503,
      message: 'no node has room for a sandbox now (all full, draining or unreachable)',
    });
  }

  async function list(req: IncomingMessage, res: ServerResponse, keyId: string, path: string): Promise<void> {
    const placed = new Map((await store.listPlacements()).map((p) => [p.id, p]));
    const live = (await listNodes()).filter((n) => n.state !== 'lost');
    const lists = await Promise.all(
      live.map(async (n) => {
        try {
          const r = await forward.call(n, 'GET', path, req, keyId);
          if (r.status !== 200) return [];
          const items = JSON.parse(r.body.toString('utf8')) as Array<{ sandboxID?: string }>;
          return items.filter((s) => s.sandboxID !== undefined && placed.get(s.sandboxID)?.node === n.name);
        } catch (err) {
          log.warn({ node: n.name, err }, 'node left out of a list');
          return [];
        }
      }),
    );
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(lists.flat()));
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
    if (
      req.method === 'DELETE' &&
      /^(\/v2)?\/sandboxes\/[a-z0-9]+$/.test(new URL(url, 'http://x').pathname) &&
      (r.status < 300 || r.status === 404)
    )
      await store.deletePlacement(id, n.name);
    reply(res, r);
  }

  return {
    node,
    async api(req: IncomingMessage, res: ServerResponse): Promise<void> {
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
        return list(req, res, record.id, url);
      const m = /^(?:\/v2)?\/sandboxes\/([a-z0-9]{1,64})(\/.*)?$/.exec(path);
      if (m) return one(req, res, record.id, m[1]!, url);
      if (req.method === 'GET' && path.startsWith('/templates')) {
        const [first] = rankNodes(await listNodes(), '', {
          now: Date.now(),
          staleMs: deps.staleMs,
          inflight,
          suspect: new Map(),
        });
        if (first) return reply(res, await forward.call(first, 'GET', url, req, record.id));
      }
      sendJson(res, 400, {
        code: 400,
        message: `${req.method} ${path} is not supported behind cove api yet (docs/scale-out.md)`,
      });
    },
  };
}
