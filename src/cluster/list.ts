import type { IncomingMessage, ServerResponse } from 'node:http';
import { encodeCursor } from '../api/list.ts';
import type { createForwarder, NodeReply } from './forward.ts';
import type { ClusterStore, NodeRecord } from './store.ts';

interface Deps {
  store: ClusterStore;
  forward: ReturnType<typeof createForwarder>;
  /** Nodes not lost. */
  live(): Promise<NodeRecord[]>;
}

interface Listed {
  sandboxID: string;
  startedAt: string;
}

/**
 * `GET /v2/sandboxes` (and v1's unpaged `GET /sandboxes`) over every live node, paged as one
 * list. The cursor (src/api/list.ts: the last item's start time and id) means the same on
 * every node, so each node is asked for the same page (`limit` after the same `nextToken`);
 * the replica keeps each node's sandboxes placed on it (a node's word about another node's
 * sandbox counts for nothing), merges the pages in the list's order, takes `limit` and hands
 * out the cursor of the last one it returns. No sandbox is skipped: a node's page holds all of
 * its sandboxes up to its `limit`-th after the cursor, and the merged page stops at or before
 * the first node's `limit`-th. None repeats: the next page starts after the returned last one.
 */
export async function listSandboxes(
  deps: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  keyId: string,
  url: string,
): Promise<void> {
  const placed = new Map((await deps.store.listPlacements()).map((p) => [p.id, p.node]));
  const query = new URL(url, 'http://api').searchParams;
  const paged = url.startsWith('/v2/');
  const replies = await Promise.all(
    (await deps.live()).map(async (n) => {
      const r = await deps.forward.call(n, 'GET', url, req, keyId).catch(() => undefined);
      return r && { n, r };
    }),
  );
  // A bad query is every node's 400: answered as the first node did.
  const refused = replies.find((x) => x && x.r.status >= 400 && x.r.status < 500);
  if (refused) return send(res, refused.r);
  const pages = replies.filter((x) => x?.r.status === 200) as Array<{ n: NodeRecord; r: NodeReply }>;
  const merged = mergePages(
    pages.map(({ n, r }) => ({
      node: n.name,
      items: JSON.parse(r.body.toString('utf8')) as Listed[],
      more: r.headers['x-next-token'] !== undefined,
    })),
    placed,
    paged
      ? { order: query.get('order') === 'asc' ? 'asc' : 'desc', limit: Number(query.get('limit') ?? 100) }
      : { order: 'desc', limit: Infinity },
  );
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (paged) {
    if (merged.nextToken) headers['x-next-token'] = merged.nextToken;
    const running = pages.reduce((sum, { r }) => sum + (Number(r.headers['x-total-running']) || 0), 0);
    headers['x-total-running'] = String(running);
  }
  res.writeHead(200, headers).end(JSON.stringify(merged.page));
}

/**
 * One page of the cluster's list from each node's page of the same query: the items each node
 * holds (by `placed`), in the list's order, `limit` of them, and the cursor to go on from.
 */
export function mergePages<T extends Listed>(
  pages: ReadonlyArray<{ node: string; items: T[]; more: boolean }>,
  placed: ReadonlyMap<string, string>,
  q: { order: 'asc' | 'desc'; limit: number },
): { page: T[]; nextToken?: string } {
  const sign = q.order === 'asc' ? 1 : -1;
  const at = (s: Listed) => Date.parse(s.startedAt);
  const compare = (a: Listed, b: Listed) =>
    sign * (at(a) - at(b) || (a.sandboxID < b.sandboxID ? -1 : a.sandboxID > b.sandboxID ? 1 : 0));
  let items: T[] = [];
  // A node with more after its page: nothing past its page's last item may be returned yet,
  // since its next items (not read) may come before what other nodes returned.
  let bound: Listed | undefined;
  for (const { node, items: all, more } of pages) {
    const last = all.at(-1);
    if (more && last && (!bound || compare(last, bound) < 0)) bound = last;
    items.push(...all.filter((s) => placed.get(s.sandboxID) === node));
  }
  items.sort(compare);
  if (bound) items = items.filter((s) => compare(s, bound) <= 0);
  const page = items.slice(0, q.limit);
  // More: past this page, or past the bound. The cursor goes on after the last item returned,
  // or after the bound when every item up to it was placed elsewhere.
  const after = page.at(-1) ?? bound;
  if ((items.length > page.length || bound) && after)
    return { page, nextToken: encodeCursor({ startedAt: at(after), id: after.sandboxID }) };
  return { page };
}

function send(res: ServerResponse, r: NodeReply): void {
  res.writeHead(r.status, { ...r.headers, 'content-length': r.body.length }).end(r.body);
}
