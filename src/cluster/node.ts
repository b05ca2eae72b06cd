import type { Config } from '../config/config.ts';
import type { Logger } from '../core/log.ts';
import { CoveError } from '../core/errors.ts';
import { startCove, type Cove } from '../main.ts';
import { SESSION_KEY } from '../mcp/deps.ts';
import { createTemplateStore } from '../templates/index.ts';
import { nodeAdmission } from './admission.ts';
import { sign, TOKEN_HEADER } from './auth.ts';
import { createSealer, SECRET_TRANSIT } from './seal.ts';
import type { Heartbeat, HeartbeatReply } from './store.ts';

export interface NodeOptions {
  /** This node's name (`[a-z0-9-]`), unique in the cluster. */
  name: string;
  /** Its secret (`cove cluster node-secret <name>`), never the cluster secret. */
  secret: string;
  /** API replicas to heartbeat to, tried in turn. */
  apiUrls: string[];
  /** Where API replicas reach this node (its listen address as they see it). */
  advertiseUrl: string;
  /** Sandboxes it takes at most (placement's capacity). */
  slots: number;
  heartbeatMs: number;
  log: Logger;
}

export interface CoveNode {
  cove: Cove;
  /** Ends heartbeats (the API soon sees this node stale) and stops serving; sandboxes keep running. */
  close(): Promise<void>;
}

/**
 * `cove node`: a whole Cove (runtime, manager, envd, port proxy) that serves only API
 * replicas (nodeAdmission), and heartbeats its capacity, templates and sandboxes to them.
 * The reply names sandboxes to remove: those the cluster marked lost while this node was
 * unreachable, and those it created for a create no client ever heard of.
 */
export async function startNode(config: Config, opts: NodeOptions): Promise<CoveNode> {
  let api = 0;
  /** A signed POST to the replicas, tried in turn from the last one that answered. */
  async function toApi(path: string, body: object, timeoutMs = 10_000): Promise<Response> {
    let last: unknown;
    for (let tried = 0; tried < opts.apiUrls.length; tried++) {
      const url = opts.apiUrls[api % opts.apiUrls.length]!;
      try {
        return await fetch(`${url}${path}`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            [TOKEN_HEADER]: sign(opts.secret, 'node-to-api', { node: opts.name }),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        last = err;
        opts.log.warn({ err, api: url }, 'an API replica did not answer; trying the next');
        api++;
      }
    }
    throw last;
  }
  // Secrets live in the cluster store: the egress proxy asks a replica for each value it
  // injects, for one of this node's sandboxes; the value comes sealed with this node's secret.
  const transit = createSealer(opts.secret, SECRET_TRANSIT);
  const secrets = {
    async value(_owner: string, name: string, sandboxId: string): Promise<string> {
      const res = await toApi('/cluster/v1/secret', { name: opts.name, sandbox: sandboxId, secret: name });
      const reply = (await res.json()) as { sealed?: string; message?: string };
      const plain = res.ok && reply.sealed ? transit.open(reply.sealed) : undefined;
      if (plain === undefined) throw new CoveError('not_found', reply.message ?? `secret ${name} not found`);
      return plain;
    },
  };
  const cove = await startCove(config, { log: opts.log, cluster: nodeAdmission(opts.secret), secrets });
  // A sandbox an MCP session's tool made here (src/mcp) had no create through a replica: this
  // node places it, or its heartbeat would find it unplaced and remove it.
  cove.manager.events.on('created', ({ id, template, input }) => {
    if (input.metadata?.[SESSION_KEY] === undefined || input.owner === undefined) return;
    toApi('/cluster/v1/placements', { name: opts.name, id, keyId: input.owner, template })
      .then((r) => (r.ok ? undefined : r.text().then((t) => Promise.reject(new Error(t)))))
      .catch((err: unknown) => opts.log.warn({ err, sandbox: id }, 'placing an MCP sandbox failed'));
  });
  const templates = createTemplateStore({ home: config.templatesHome, recipesDir: config.recipesDir });
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  async function beat(): Promise<void> {
    const all = cove.manager.list().filter((s) => s.state !== 'pooled');
    // Only finished creates are claimed: one still starting has not been answered, so its
    // placement cannot exist yet. It takes a slot all the same.
    const sandboxes = all.filter((s) => s.state === 'running' || s.state === 'paused');
    const built = await templates.list().catch(() => []);
    const body: Heartbeat = {
      name: opts.name,
      url: opts.advertiseUrl,
      slots: opts.slots,
      free: Math.max(0, opts.slots - all.length),
      templates: [...new Set(built.map((t) => t.name))],
      draining: false,
      sandboxes: sandboxes.map((s) => ({ id: s.id, startedAt: s.startedAt.getTime() })),
    };
    try {
      const res = await toApi('/cluster/v1/heartbeat', body, Math.max(2_000, opts.heartbeatMs * 2));
      if (!res.ok) {
        api++; // a replica that answers but cannot take it (its database is away): the next one may
        throw new Error(`heartbeat: ${res.status} ${await res.text()}`);
      }
      const reply = (await res.json()) as HeartbeatReply;
      for (const id of reply.kill) {
        opts.log.info({ sandbox: id }, 'removing a sandbox the cluster no longer places here');
        await cove.manager
          .kill(id)
          .catch((err: unknown) => opts.log.warn({ err, sandbox: id }, 'kill failed'));
      }
      if (reply.ignored.length > 0)
        opts.log.warn({ ids: reply.ignored }, 'sandboxes here that the cluster places elsewhere');
    } catch (err) {
      opts.log.warn({ err }, 'heartbeat failed');
    }
  }

  const loop = () => {
    timer = setTimeout(() => {
      void beat().finally(() => {
        if (!stopped) loop();
      });
    }, opts.heartbeatMs);
  };
  await beat();
  loop();
  return {
    cove,
    async close() {
      stopped = true;
      clearTimeout(timer);
      await cove.close();
    },
  };
}
