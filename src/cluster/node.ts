import type { Config } from '../config/config.ts';
import type { Logger } from '../core/log.ts';
import { startCove, type Cove } from '../main.ts';
import { createTemplateStore } from '../templates/index.ts';
import { nodeAdmission } from './admission.ts';
import { sign, TOKEN_HEADER } from './auth.ts';
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
  const cove = await startCove(config, { log: opts.log, cluster: nodeAdmission(opts.secret) });
  const templates = createTemplateStore({ home: config.templatesHome, recipesDir: config.recipesDir });
  let api = 0;
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
    for (let tried = 0; tried < opts.apiUrls.length; tried++) {
      const url = opts.apiUrls[api % opts.apiUrls.length]!;
      try {
        const res = await fetch(`${url}/cluster/v1/heartbeat`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            [TOKEN_HEADER]: sign(opts.secret, 'node-to-api', { node: opts.name }),
          },
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(Math.max(2_000, opts.heartbeatMs * 2)),
        });
        if (!res.ok) throw new Error(`heartbeat: ${res.status} ${await res.text()}`);
        const reply = (await res.json()) as HeartbeatReply;
        for (const id of reply.kill) {
          opts.log.info({ sandbox: id }, 'removing a sandbox the cluster no longer places here');
          await cove.manager
            .kill(id)
            .catch((err: unknown) => opts.log.warn({ err, sandbox: id }, 'kill failed'));
        }
        if (reply.ignored.length > 0)
          opts.log.warn({ ids: reply.ignored }, 'sandboxes here that the cluster places elsewhere');
        return;
      } catch (err) {
        opts.log.warn({ err, api: url }, 'heartbeat failed; trying the next API replica');
        api++;
      }
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
