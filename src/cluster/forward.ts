import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { createPortProxy } from '../gateway/proxy.ts';
import { nodeSecret, sign, TOKEN_HEADER } from './auth.ts';
import type { NodeRecord } from './store.ts';

/** A buffered reply of a node's control API. */
export interface NodeReply {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/** Request headers an API call carries to a node; the rest are the replica's business. */
const API_HEADERS = [
  'content-type',
  'accept',
  'x-api-key',
  'authorization',
  'x-request-id',
  'user-agent',
  // MCP's Streamable HTTP (/mcp, routed to a node: mcp.ts)
  'mcp-session-id',
  'mcp-protocol-version',
  'last-event-id',
];
/** Reply headers a node's API answer carries back (list pagination among them). */
const REPLY_HEADERS = ['content-type', 'x-next-token', 'x-total-items', 'x-total-running', 'mcp-session-id'];

/** Connection failures after which nothing reached the node: another node may be tried. */
export function unreachable(err: unknown): boolean {
  const cause = (err as { cause?: { code?: string } }).cause;
  const code = cause?.code ?? (err as { code?: string }).code ?? '';
  return ['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EHOSTDOWN', 'UND_ERR_CONNECT_TIMEOUT'].includes(
    code,
  );
}

/**
 * The API replica's two ways to a node: buffered calls of its control API (small JSON, which
 * the replica reads: sandbox ids, domains), and the sandbox traffic (envd, port previews)
 * streamed through the gateway's port proxy, WebSockets included. Every request carries a
 * token signed with the node's secret, naming the caller's key id.
 */
export function createForwarder(clusterSecret: string) {
  const proxy = createPortProxy();
  const token = (node: string, keyId?: string) =>
    sign(nodeSecret(clusterSecret, node), 'api-to-node', keyId === undefined ? {} : { keyId });

  /** The token as the only cluster header of a proxied request (a client's own is dropped). */
  function stamp(req: IncomingMessage, node: string, keyId?: string): void {
    const raw = req.rawHeaders;
    const kept: string[] = [];
    for (let i = 0; i + 1 < raw.length; i += 2)
      if (raw[i]!.toLowerCase() !== TOKEN_HEADER) kept.push(raw[i]!, raw[i + 1]!);
    kept.push('Cove-Cluster-Token', token(node, keyId));
    raw.splice(0, raw.length, ...kept);
  }

  /** The caller's API headers (the node's key check wants one present) and the token naming its key. */
  const headersFor = (node: NodeRecord, req: IncomingMessage, keyId: string) => {
    const headers: Record<string, string> = { [TOKEN_HEADER]: token(node.name, keyId) };
    for (const name of API_HEADERS) {
      const value = req.headers[name];
      if (typeof value === 'string') headers[name] = value;
    }
    return headers;
  };

  const target = (node: NodeRecord) => {
    const url = new URL(node.url);
    return { sandboxId: node.name, address: url.hostname, port: Number(url.port || 80) };
  };

  return {
    async call(
      node: NodeRecord,
      method: string,
      path: string,
      req: IncomingMessage,
      keyId: string,
      body?: Buffer,
    ): Promise<NodeReply> {
      const res = await fetch(new URL(path, node.url), {
        method,
        headers: headersFor(node, req, keyId),
        ...(body !== undefined && body.length > 0 && { body: new Uint8Array(body) }),
        signal: AbortSignal.timeout(120_000),
      });
      const out: Record<string, string> = {};
      for (const name of REPLY_HEADERS) {
        const value = res.headers.get(name);
        if (value !== null) out[name] = value;
      }
      return { status: res.status, headers: out, body: Buffer.from(await res.arrayBuffer()) };
    },

    /** Streamed both ways; with `keyId`, an API call on the caller's behalf (exec, /mcp). */
    request(req: IncomingMessage, res: ServerResponse, node: NodeRecord, keyId?: string): void {
      stamp(req, node.name, keyId);
      proxy.request(req, res, target(node));
    },

    upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, node: NodeRecord): void {
      stamp(req, node.name);
      proxy.upgrade(req, socket, head, target(node));
    },

    /** A GET whose answer is read as it comes (a node's Server-Sent Events). */
    stream(
      node: NodeRecord,
      path: string,
      req: IncomingMessage,
      keyId: string,
      signal: AbortSignal,
    ): Promise<Response> {
      return fetch(new URL(path, node.url), { headers: headersFor(node, req, keyId), signal });
    },

    close: () => proxy.close(),
  };
}

/** Reads a request body up to `max` bytes. */
export async function readBody(req: IncomingMessage, max = 1 << 20): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) throw Object.assign(new Error('request body too large'), { status: 413 });
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
