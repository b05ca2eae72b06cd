/**
 * A small client for Cove's memory service, for code in a sandbox (it reads COVE_SERVICES_URL
 * and COVE_SERVICES_TOKEN by default) or outside one (Cove's URL and an API key). No
 * dependencies: Node 18+ fetch.
 *
 *   const memory = createMemoryClient().namespace('notes');
 *   await memory.remember('The user prefers tabs');
 *   const [best] = await memory.recall('indentation preference');
 */
import type { Entry } from './store.ts';

/** What the service returns for an entry (store.ts's Entry; `score` on recall). The import is
 * type-only, so the client still runs alone. */
export type MemoryEntry = Entry & { score?: number };

export interface MemoryClientOptions {
  /** Default: $COVE_SERVICES_URL. */
  baseUrl?: string;
  /** A sandbox token or an API key. Default: $COVE_SERVICES_TOKEN. */
  token?: string;
  fetch?: typeof fetch;
}

export class MemoryError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'MemoryError';
    this.status = status;
  }
}

export function createMemoryClient(opts: MemoryClientOptions = {}) {
  const baseUrl = (opts.baseUrl ?? process.env.COVE_SERVICES_URL ?? '').replace(/\/+$/, '');
  const token = opts.token ?? process.env.COVE_SERVICES_TOKEN ?? '';
  const doFetch = opts.fetch ?? fetch;
  if (!baseUrl) throw new Error('memory client: no baseUrl and no $COVE_SERVICES_URL');

  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await doFetch(`${baseUrl}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body !== undefined && { 'content-type': 'application/json' }),
      },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    if (res.status === 204) return undefined as T;
    const json = (await res.json().catch(() => ({}))) as { error?: { message?: string } };
    if (!res.ok) throw new MemoryError(res.status, json.error?.message ?? `HTTP ${res.status}`);
    return json as T;
  }

  return {
    namespace(name: string) {
      const ns = `/v1/memory/${encodeURIComponent(name)}`;
      return {
        /** A long-term fact (kind 'fact'), or session context with `kind: 'short'` and a TTL. */
        remember(
          text: string,
          o: {
            kind?: 'short' | 'fact';
            ttlSeconds?: number;
            session?: string;
            metadata?: Record<string, unknown>;
          } = {},
        ): Promise<MemoryEntry> {
          return call('POST', `${ns}/entries`, { text, ...o });
        },
        async recall(
          query: string,
          o: { limit?: number; kind?: 'short' | 'fact' | 'chunk'; session?: string } = {},
        ): Promise<MemoryEntry[]> {
          return (await call<{ results: MemoryEntry[] }>('POST', `${ns}/recall`, { query, ...o })).results;
        },
        async list(o: { kind?: string; session?: string; limit?: number } = {}): Promise<MemoryEntry[]> {
          const q = new URLSearchParams(Object.entries(o).map(([k, v]): [string, string] => [k, String(v)]));
          return (await call<{ entries: MemoryEntry[] }>('GET', `${ns}/entries?${q.toString()}`)).entries;
        },
        forget(id: number): Promise<void> {
          return call('DELETE', `${ns}/entries/${id}`);
        },
        /** Forgets the whole namespace; returns how many entries went. */
        async clear(): Promise<number> {
          return (await call<{ forgotten: number }>('DELETE', ns)).forgotten;
        },
        /** A document as text, or a file of the sandbox (`path`), chunked for recall with citations. */
        ingest(doc: {
          text?: string;
          path?: string;
          title?: string;
          sandboxId?: string;
          chunkSize?: number;
          metadata?: Record<string, unknown>;
        }): Promise<{ id: string; title: string; chunks: number }> {
          return call('POST', `${ns}/documents`, doc);
        },
        removeDocument(id: string): Promise<void> {
          return call('DELETE', `${ns}/documents/${encodeURIComponent(id)}`);
        },
      };
    },
  };
}
