import type { IncomingMessage } from 'node:http';
import { getRequestListener, type HttpBindings } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { errorHandler } from '../api/errors.ts';
import { keyRoutes } from '../api/keys.ts';
import { secretRoutes } from '../api/secrets.ts';
import { consoleRoutes } from '../console/serve.ts';
import { CoveError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import { currentRequest } from '../core/request-context.ts';
import type { HostHealth } from '../metrics/host.ts';
import type { UsageSummary } from '../services/usage.ts';
import type { createForwarder, NodeReply } from './forward.ts';
import { clusterKeys } from './keys.ts';
import { mergePrometheus, sumUsage } from './merge.ts';
import type { ClusterSecrets } from './secrets.ts';
import type { ClusterStore, NodeRecord } from './store.ts';

type Env = { Bindings: HttpBindings; Variables: { keyId: string } };

interface Deps {
  store: ClusterStore;
  forward: ReturnType<typeof createForwarder>;
  secrets: ClusterSecrets;
  /** Nodes not lost. */
  live(): Promise<NodeRecord[]>;
  /** The node that holds a running sandbox, or undefined. */
  ownerOf(id: string): Promise<NodeRecord | undefined>;
  /** A node that takes work, for what any node answers alike (the shared template cache). */
  anyNode(): Promise<NodeRecord>;
  log: Logger;
}

/** A node's event stream that broke is opened again this long after (and new nodes joined). */
const RESCAN_MS = 3_000;
const PING_MS = 15_000;

/**
 * What a `cove api` replica serves itself rather than forwarding one call to one node: the
 * secrets and API keys, from the cluster store (through the single host's own routes,
 * src/api/secrets.ts and keys.ts, over the cluster's store); the console's page; and the
 * console's `/cove/v1` reads gathered from every live node (sandbox events merged into one
 * stream, the host figures summed with each node's beside them, builds, pools, audit records,
 * sandbox metrics, service usage), the nodes' Prometheus metrics (merge.ts) and their workload
 * identity keys. A route none of these serves is answered 400, "not supported behind cove
 * api yet" (docs/scale-out.md lists them).
 */
export function gatheredRoutes(deps: Deps) {
  const { forward } = deps;
  const app = new Hono<Env>();
  app.onError(errorHandler(deps.log));
  app.notFound((c) =>
    c.json(
      {
        code: 400,
        message: `${c.req.method} ${c.req.path} is not supported behind cove api yet (docs/scale-out.md)`,
      },
      400,
    ),
  );
  // The page and its scripts carry no key (the page asks for one).
  app.route('/', consoleRoutes());
  // Workload identity (src/identity), without a key as on one host: every node signs with its
  // own key, so the key set is all of theirs; the discovery document is any node's (set
  // COVE_IDENTITY_ISSUER on the nodes to the replicas' public URL: docs/scale-out.md).
  app.get('/.well-known/jwks.json', async (c) => {
    const keys = new Map<string, unknown>();
    for (const { r } of await eachRaw(c, '/.well-known/jwks.json', ''))
      for (const k of (JSON.parse(r.body.toString('utf8')) as { keys: Array<{ kid?: string }> }).keys)
        keys.set(k.kid ?? JSON.stringify(k), k);
    return c.json({ keys: [...keys.values()] });
  });
  app.get('/.well-known/openid-configuration', async (c) =>
    replyOf(c, await forward.call(await deps.anyNode(), 'GET', pathOf(c), incoming(c), '')),
  );
  // The replica checked the key (routes.ts) and put its id in the request's context.
  app.use('*', async (c, next) => {
    const keyId = currentRequest()?.keyId;
    if (keyId === undefined) throw new CoveError('unauthenticated', 'missing API key');
    c.set('keyId', keyId);
    await next();
  });
  app.route('/', secretRoutes(deps.secrets));
  app.route('/', keyRoutes(clusterKeys(deps.store.db)));

  const incoming = (c: Context<Env>): IncomingMessage => c.env.incoming;
  const pathOf = (c: Context<Env>) => {
    const u = new URL(c.req.url);
    return u.pathname + u.search;
  };
  /** Every live node's answer to the same GET (a node that fails is left out, and logged). */
  async function eachRaw(
    c: Context<Env>,
    path: string,
    keyId: string = c.get('keyId'),
  ): Promise<Array<{ node: NodeRecord; r: NodeReply }>> {
    const nodes = await deps.live();
    const replies = await Promise.all(
      nodes.map(async (node) => {
        const r: NodeReply | undefined = await forward
          .call(node, 'GET', path, incoming(c), keyId)
          .catch((err: unknown) => void deps.log.warn({ node: node.name, err }, 'node left out of a gather'));
        return r?.status === 200 ? { node, r } : undefined;
      }),
    );
    return replies.filter((r) => r !== undefined);
  }
  const each = async (c: Context<Env>, path: string) =>
    (await eachRaw(c, path)).map(({ node, r }) => ({
      node,
      body: JSON.parse(r.body.toString('utf8')) as unknown,
    }));
  const replyOf = (c: Context<Env>, r: NodeReply) =>
    c.body(
      new Uint8Array(r.body),
      r.status as 200,
      r.headers['content-type'] ? { 'content-type': r.headers['content-type'] } : {},
    );

  app.get('/cove/v1/host', async (c) => {
    const all = await each(c, '/cove/v1/host');
    const sum: HostHealth = {
      cpus: 0,
      cpuBusyRatio: 0,
      load1: 0,
      memoryBytes: 0,
      memoryAvailableBytes: 0,
      diskBytes: 0,
      diskAvailableBytes: 0,
      sandboxes: {},
      pools: {},
    };
    let busy = 0;
    for (const { body } of all) {
      const h = body as HostHealth;
      sum.cpus += h.cpus;
      busy += h.cpuBusyRatio * h.cpus;
      sum.load1 += h.load1;
      sum.memoryBytes += h.memoryBytes;
      sum.memoryAvailableBytes += h.memoryAvailableBytes;
      sum.diskBytes += h.diskBytes;
      sum.diskAvailableBytes += h.diskAvailableBytes;
      for (const [backend, states] of Object.entries(h.sandboxes))
        for (const [state, n] of Object.entries(states))
          (sum.sandboxes[backend] ??= {})[state] = (sum.sandboxes[backend]?.[state] ?? 0) + n;
      addPools(sum.pools, h.pools);
    }
    sum.cpuBusyRatio = sum.cpus > 0 ? busy / sum.cpus : 0;
    // The cluster as one host (the console's page reads that), and each node's own figures.
    return c.json({ ...sum, nodes: all.map(({ node, body }) => ({ name: node.name, ...(body as object) })) });
  });

  app.get('/cove/v1/pools', async (c) => {
    const pools: HostHealth['pools'] = {};
    for (const { body } of await each(c, '/cove/v1/pools')) addPools(pools, body as HostHealth['pools']);
    return c.json(pools);
  });

  app.get('/cove/v1/builds', async (c) => {
    const limit = Math.min(500, Math.max(1, Number(c.req.query('limit') ?? 50) || 50));
    const builds = (await each(c, `/cove/v1/builds?limit=${limit}`)).flatMap(
      ({ body }) => body as Array<{ createdAt: string; buildID: string }>,
    );
    builds.sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.buildID.localeCompare(a.buildID));
    return c.json(builds.slice(0, limit));
  });

  // The template cache is shared: any node answers.
  app.get('/cove/v1/templates', async (c) =>
    replyOf(c, await forward.call(await deps.anyNode(), 'GET', pathOf(c), incoming(c), c.get('keyId'))),
  );

  // One sandbox's trail is on its node; the whole trail is every node's, merged by time.
  app.get('/cove/v1/audit', async (c) => {
    const path = pathOf(c);
    const sandbox = c.req.query('sandbox');
    const owner = sandbox ? await deps.ownerOf(sandbox) : undefined;
    if (owner) return replyOf(c, await forward.call(owner, 'GET', path, incoming(c), c.get('keyId')));
    type Page = { events: Array<{ at: number }>; dropped?: number };
    const pages = await each(c, path);
    const events = pages.flatMap(({ body }) => (body as Page).events).sort((a, b) => a.at - b.at);
    const dropped = pages.reduce((n, { body }) => n + ((body as Page).dropped ?? 0), 0);
    // Each node pages its own trail (`after` is a node's sequence number): no merged `next`.
    return c.json({ events, ...(sandbox && { dropped }) });
  });

  app.get('/sandboxes/metrics', async (c) => {
    const sandboxes: Record<string, unknown> = {};
    const path = pathOf(c);
    for (const { body } of await each(c, path))
      Object.assign(sandboxes, (body as { sandboxes: Record<string, unknown> }).sandboxes);
    return c.json({ sandboxes });
  });

  // Nodes admit only replicas, so their metrics are scraped here, each sample labelled by node.
  app.get('/metrics', async (c) => {
    const parts = (await eachRaw(c, '/metrics')).map(({ node, r }) => ({
      node: node.name,
      text: r.body.toString('utf8'),
    }));
    return c.body(mergePrometheus(parts), 200, {
      'content-type': 'text/plain; version=0.0.4; charset=utf-8',
    });
  });

  // Runtime services' usage: each node keeps the ledger of its sandboxes' calls; summed here.
  app.get('/cove/v1/usage', async (c) => {
    const sandbox = c.req.query('sandboxId');
    const owner = sandbox ? await deps.ownerOf(sandbox) : undefined;
    if (owner) return replyOf(c, await forward.call(owner, 'GET', pathOf(c), incoming(c), c.get('keyId')));
    const parts = await each(c, pathOf(c));
    const who = sandbox ? { sandboxId: sandbox } : { keyId: c.req.query('keyId') ?? c.get('keyId') };
    return c.json({ ...who, ...sumUsage(parts.map((p) => p.body as UsageSummary)) });
  });

  app.get('/cove/v1/sandbox-events', (c) =>
    streamSSE(c, async (stream) => {
      const abort = new AbortController();
      stream.onAbort(() => abort.abort());
      const open = new Set<string>();
      /** Resolves once the node's stream is ready (its `ready` event), or has failed. */
      const follow = (node: NodeRecord) =>
        new Promise<void>((ready) => {
          open.add(node.name);
          void (async () => {
            try {
              const res = await forward.stream(
                node,
                '/cove/v1/sandbox-events',
                incoming(c),
                c.get('keyId'),
                abort.signal,
              );
              if (!res.ok || !res.body) return;
              let buffer = '';
              for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
                buffer += chunk;
                const events = buffer.split('\n\n');
                buffer = events.pop() ?? '';
                for (const e of events) {
                  const event = /^event: (\w+)$/m.exec(e)?.[1];
                  const data = /^data: (.*)$/m.exec(e)?.[1];
                  if (event === 'ready') ready();
                  else if (event && data) await stream.writeSSE({ event, data });
                }
              }
            } catch {
              // the node went away, or the client did: the rescan tries again while the client stays
            } finally {
              open.delete(node.name);
              ready();
            }
          })();
        });
      const scan = async () => {
        const nodes = await deps.live().catch(() => []);
        await Promise.all(nodes.filter((n) => !open.has(n.name) && !abort.signal.aborted).map(follow));
      };
      await scan();
      await stream.writeSSE({ event: 'ready', data: '{}' });
      for (let ticks = 1; !abort.signal.aborted; ticks++) {
        await stream.sleep(RESCAN_MS);
        await scan();
        if (ticks % Math.round(PING_MS / RESCAN_MS) === 0)
          await stream.write(': ping\n\n').catch(() => abort.abort());
      }
    }),
  );

  const listener = getRequestListener(app.fetch);
  return (req: IncomingMessage, res: import('node:http').ServerResponse) => listener(req, res);
}

function addPools(into: HostHealth['pools'], from: HostHealth['pools']): void {
  for (const [template, p] of Object.entries(from)) {
    const t = (into[template] ??= { ready: 0, target: 0 });
    t.ready += p.ready;
    t.target += p.target;
  }
}
