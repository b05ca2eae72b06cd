import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from '../gateway/reply.ts';
import { readBody, type createForwarder, type NodeReply } from './forward.ts';
import type { ClusterStore, NodeRecord } from './store.ts';

interface Deps {
  store: ClusterStore;
  forward: ReturnType<typeof createForwarder>;
  node(name: string): Promise<NodeRecord | undefined>;
  anyNode(): Promise<NodeRecord>;
  reply(res: ServerResponse, r: NodeReply): void;
}

/**
 * Cove's MCP server (`/mcp`, src/mcp) behind `cove api`: each session lives on one node, which
 * runs its tools (its command jobs and progress streams are that node's memory). A session's
 * first request (initialize: no `Mcp-Session-Id`) goes to a node that takes work, buffered so
 * the replica reads the session id the node gave and records it in the store (`homes`, kind
 * `mcp`, with the key that opened it); every later request of the session, through any replica,
 * is streamed to that node. The sandboxes its tools create are placed on that node (the node
 * reports them: node.ts), so the REST API and the SDK reach them through any replica too.
 * A session's tools see the sandboxes of its node, not those of other nodes (docs/scale-out.md).
 */
export function mcpRoute(deps: Deps) {
  const { store, forward } = deps;
  const gone = (res: ServerResponse) =>
    sendJson(res, 404, { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null });

  return async (req: IncomingMessage, res: ServerResponse, keyId: string): Promise<void> => {
    const session = req.headers['mcp-session-id'];
    if (typeof session !== 'string') {
      const n = await deps.anyNode();
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      const r = await forward.call(n, req.method ?? 'POST', '/mcp', req, keyId, body);
      const id = r.headers['mcp-session-id'];
      if (id) await store.setHome({ kind: 'mcp', id, node: n.name, keyId, createdAt: Date.now() });
      return deps.reply(res, r);
    }
    const home = await store.getHome('mcp', session);
    // Another key's session is as unknown as an ended one (as on a single host: src/mcp/http.ts).
    const n = home && home.keyId === keyId ? await deps.node(home.node) : undefined;
    if (!n || n.state === 'lost') return gone(res);
    if (req.method === 'DELETE') await store.deleteHome('mcp', session);
    forward.request(req, res, n, keyId);
  };
}
