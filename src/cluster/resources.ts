import type { IncomingMessage, ServerResponse } from 'node:http';
import { CoveError } from '../core/errors.ts';
import { UPLOAD_PATH } from '../api/templates.ts';
import { readBody, type createForwarder, type NodeReply } from './forward.ts';
import type { ClusterStore, HomeKind, NodeRecord } from './store.ts';

interface Deps {
  store: ClusterStore;
  forward: ReturnType<typeof createForwarder>;
  node(name: string): Promise<NodeRecord | undefined>;
  /** Nodes that take new work, best first (placement.ts). */
  rank(template: string): Promise<NodeRecord[]>;
  /** Nodes not lost (they may hold resources, draining or not). */
  live(): Promise<NodeRecord[]>;
  reply(res: ServerResponse, r: NodeReply): void;
}

/** Upstream's volume and template ids and names, and content hashes: plain path segments. */
const SEGMENT = '([A-Za-z0-9][A-Za-z0-9._:-]{0,127})';
const re = (pattern: string) => new RegExp(`^${pattern.replaceAll('SEG', SEGMENT)}$`);

/**
 * The resources other than sandboxes behind `cove api` (docs/scale-out.md): each lives on the
 * node that made it, recorded in the cluster store's `homes`, and every call about it goes
 * there. Volumes and snapshots are a node's disk, so a create that mounts a volume or starts
 * from a snapshot is placed on that node (`pinned`); template builds run on one node (its
 * build records and uploads are its own) and write the shared template cache; lists gather
 * every node's answer and keep what each node is the home of.
 */
export function resourceRoutes(deps: Deps) {
  const { store, forward } = deps;
  const home = async (kind: HomeKind, id: string): Promise<NodeRecord> => {
    const h = await store.getHome(kind, id);
    const n = h && (await deps.node(h.node));
    if (!h || !n) throw new CoveError('not_found', `${kind} ${id} not found`);
    if (n.state === 'lost')
      throw new CoveError('unavailable', `${kind} ${id} is on node ${n.name}, which is lost`);
    return n;
  };
  const json = (r: NodeReply): unknown => JSON.parse(r.body.toString('utf8'));
  const ok = (r: NodeReply) => r.status >= 200 && r.status < 300;
  const record = (kind: HomeKind, id: string, node: string, keyId: string | null) =>
    store.setHome({ kind, id, node, keyId, createdAt: Date.now() });

  /** Each live node's list, keeping the items whose home (by `idOf`) is that node. */
  async function gather(
    req: IncomingMessage,
    res: ServerResponse,
    keyId: string,
    url: string,
    kind: HomeKind,
    idOf: (item: Record<string, unknown>) => unknown,
  ): Promise<void> {
    const homes = new Map((await store.listHomes(kind)).map((h) => [h.id, h.node]));
    const lists = await Promise.all(
      (await deps.live()).map(async (n) => {
        const r = await forward.call(n, 'GET', url, req, keyId).catch(() => undefined);
        if (!r || r.status !== 200) return [];
        return (json(r) as Array<Record<string, unknown>>).filter(
          (item) => homes.get(String(idOf(item))) === n.name,
        );
      }),
    );
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(lists.flat()));
  }

  /** A buffered call to `n`, answered as the node answered. */
  async function call(req: IncomingMessage, n: NodeRecord, keyId: string, url: string) {
    const body = req.method === 'GET' || req.method === 'DELETE' ? undefined : await readBody(req);
    return forward.call(n, req.method ?? 'GET', url, req, keyId, body);
  }

  /** The first node that takes work, for what may run anywhere (a build, a template query). */
  async function anyNode(): Promise<NodeRecord> {
    const [first] = await deps.rank('');
    const n = first ?? (await deps.live())[0];
    if (!n) throw new CoveError('unavailable', 'no node is up to serve this now');
    return n;
  }

  return {
    anyNode,

    /**
     * Calls that carry no API key: volume content (the volume's token) and template uploads
     * (a signed URL), streamed to the home node, which checks them. False: not one of these.
     */
    async withoutKey(req: IncomingMessage, res: ServerResponse, path: string): Promise<boolean> {
      const content = re('/volumecontent/SEG/(dir|path|file)').exec(path);
      const upload = re(`${UPLOAD_PATH}/SEG`).exec(path);
      if (!content && !upload) return false;
      const n = content ? await home('volume', content[1]!) : await home('upload', upload![1]!);
      forward.request(req, res, n);
      return true;
    },

    /** The node a create must go to (its volumes or its snapshot live there), or undefined. */
    async pinned(keyId: string, body: { templateID?: unknown; volumeMounts?: unknown }) {
      const nodes = new Set<string>();
      if (typeof body.templateID === 'string') {
        const h = await store.getHome('snapshot', body.templateID);
        if (h) nodes.add(h.node);
      }
      if (Array.isArray(body.volumeMounts))
        for (const m of body.volumeMounts as Array<{ name?: unknown }>) {
          if (typeof m?.name !== 'string') continue;
          const h = await store.getHome('volume-name', `${keyId}/${m.name}`);
          if (h) nodes.add(h.node);
        }
      if (nodes.size > 1)
        throw new CoveError(
          'invalid_argument',
          `this create needs volumes or a snapshot that live on different nodes (${[...nodes].join(', ')}): a sandbox runs on one node`,
        );
      return [...nodes][0];
    },

    /** After a sandbox call answered: a snapshot it made lives on that node. */
    async afterSandboxCall(path: string, method: string, r: NodeReply, n: NodeRecord, keyId: string) {
      if (method !== 'POST' || !ok(r) || !/\/snapshots$/.test(path)) return;
      const s = json(r) as { snapshotID?: unknown; names?: unknown };
      for (const id of [s.snapshotID, ...(Array.isArray(s.names) ? (s.names as unknown[]) : [])])
        if (typeof id === 'string') await record('snapshot', id, n.name, keyId);
    },

    /** Key-checked calls about volumes, snapshots and templates. False: not one of these. */
    async withKey(req: IncomingMessage, res: ServerResponse, keyId: string, url: string): Promise<boolean> {
      const path = new URL(url, 'http://api').pathname;
      const method = req.method ?? 'GET';
      let m: RegExpExecArray | null;

      if (path === '/volumes' && method === 'POST') {
        const n = await anyNode();
        const r = await call(req, n, keyId, url);
        if (ok(r)) {
          const v = json(r) as { volumeID: string; name: string };
          await record('volume', v.volumeID, n.name, keyId);
          await record('volume-name', `${keyId}/${v.name}`, n.name, keyId);
        }
        deps.reply(res, r);
      } else if (path === '/volumes' && method === 'GET') {
        await gather(req, res, keyId, url, 'volume', (v) => v.volumeID);
      } else if ((m = re('/volumes/SEG').exec(path))) {
        const id = m[1]!;
        const n = await home('volume', id);
        // Its name's record goes with it: the node tells the name (to the owner only).
        const before =
          method === 'DELETE' ? await forward.call(n, 'GET', `/volumes/${id}`, req, keyId) : undefined;
        const r = await call(req, n, keyId, url);
        if (before && ok(before) && ok(r)) {
          await store.deleteHome('volume', id);
          await store.deleteHome('volume-name', `${keyId}/${(json(before) as { name: string }).name}`);
        }
        deps.reply(res, r);
      } else if (path === '/snapshots' && method === 'GET') {
        await gather(req, res, keyId, url, 'snapshot', (s) => s.snapshotID);
      } else if (path === '/v3/templates' && method === 'POST') {
        const n = await anyNode();
        const r = await call(req, n, keyId, url);
        if (ok(r)) {
          const b = json(r) as { templateID: string; buildID: string };
          await record('template', b.templateID, n.name, keyId);
          await record('build', b.buildID, n.name, keyId);
        }
        deps.reply(res, r);
      } else if ((m = re('/templates/SEG/files/SEG').exec(path))) {
        const n = await home('template', m[1]!);
        const r = await call(req, n, keyId, url);
        const f = ok(r) ? (json(r) as { present?: boolean; url?: string }) : undefined;
        if (f?.url) {
          // The upload URL names the node; the client reaches the cluster through this replica.
          await record('upload', m[2]!, n.name, keyId);
          const u = new URL(f.url);
          f.url = `${publicOrigin(req)}${u.pathname}${u.search}`;
          sendReply(deps, res, r, f);
        } else deps.reply(res, r);
      } else if ((m = re('(?:/v2)?/templates/SEG/builds/SEG(?:/status)?').exec(path))) {
        deps.reply(res, await call(req, await home('build', m[2]!), keyId, url));
      } else if ((m = re('/templates/SEG').exec(path)) && method === 'DELETE') {
        const snapshot = await store.getHome('snapshot', m[1]!);
        const n = snapshot ? await home('snapshot', m[1]!) : await anyNode();
        const r = await call(req, n, keyId, url);
        if (snapshot && ok(r)) await store.deleteHome('snapshot', m[1]!);
        deps.reply(res, r);
      } else if (/^\/(v\d\/)?templates(\/|$)/.test(path)) {
        // The template cache is shared (docs/scale-out.md): any node answers about it.
        deps.reply(res, await call(req, await anyNode(), keyId, url));
      } else return false;
      return true;
    },
  };
}

/** The origin the client used to reach this replica (behind a proxy: its X-Forwarded-Proto). */
function publicOrigin(req: IncomingMessage): string {
  const proto =
    String(req.headers['x-forwarded-proto'] ?? '')
      .split(',')[0]
      ?.trim() || 'http';
  return `${proto === 'https' ? 'https' : 'http'}://${req.headers.host ?? 'localhost'}`;
}

function sendReply(deps: Deps, res: ServerResponse, r: NodeReply, body: unknown): void {
  deps.reply(res, { ...r, body: Buffer.from(JSON.stringify(body)) });
}
