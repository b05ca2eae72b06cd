import { EventEmitter } from 'node:events';
import type { AgentClient, AgentProcess, ProcessHandlers } from '../agent-channel/client.ts';
import { CoveError } from '../core/errors.ts';
import { newSandboxId, newToken } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import type { SandboxRecord, SandboxState, Store } from '../store/store.ts';
import type { Template, TemplateStore } from '../templates/index.ts';
import { agentSocket, provision, teardown, type HostDeps } from './host.ts';
import { createProcessRegistry, type ProcessRegistry } from './processes.ts';
import { reconcile, type ReconcileReport } from './reconcile.ts';
import { resolveUser, type SandboxUser } from './users.ts';

export interface SandboxInfo {
  id: string;
  templateName: string;
  state: SandboxState;
  startedAt: Date;
  endAt: Date;
  metadata: Record<string, string>;
  limits: SandboxRecord['limits'];
  address: string;
  /** envd's access token (E2B `secure` sandboxes); callers at the edge check it. */
  envdAccessToken?: string;
}

export interface CreateSandboxInput {
  template: string;
  timeoutMs: number;
  /** E2B `secure`: envd then requires this sandbox's access token. */
  secure?: boolean;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
}

export interface ExecInput {
  argv: string[];
  /** A user name or numeric uid of the sandbox; the template's default user when absent. */
  user?: string;
  env?: Record<string, string>;
  cwd?: string;
  pty?: { cols: number; rows: number };
  stdin?: boolean;
  tag?: string;
}

export interface ManagerOptions {
  store: Store;
  templates: TemplateStore;
  host: HostDeps;
  connect: (socket: string, token: string, opts?: { timeoutMs?: number }) => Promise<AgentClient>;
  log: Logger;
  maxTimeoutMs: number;
  /** How long a started sandbox's agent may take to answer. */
  agentTimeoutMs: number;
}

/** A sandbox this process is serving: its record plus what lives only in memory. */
interface Live {
  record: SandboxRecord;
  agent?: AgentClient;
  timer?: NodeJS.Timeout;
  users: Map<string, SandboxUser>;
  /** The template's defaults (env, user), read once: exec is a hot path. */
  template?: Template;
  /** What envd started here (List, Connect, stdin); dropped with the sandbox. */
  processes: ProcessRegistry;
  killing?: Promise<void>;
}

export type Manager = ReturnType<typeof createManager>;

/** What the manager tells the edges: `killed` fires as soon as a sandbox stops being
 * reachable (kill, timeout or death), before its teardown, so that gateways can drop its
 * open connections. */
export interface ManagerEvents {
  killed: [id: string];
}

/**
 * The sandbox state machine: starting → running → (killing) → gone. A state is written to
 * the store before it is acknowledged; timers kill a sandbox at its end time; `start()`
 * adopts what still runs after a restart and reclaims what nobody owns.
 */
export function createManager(opts: ManagerOptions) {
  const { store, templates, host, log } = opts;
  const live = new Map<string, Live>();
  const events = new EventEmitter<ManagerEvents>();

  function info(record: SandboxRecord): SandboxInfo {
    return {
      id: record.id,
      templateName: record.templateName,
      state: record.state,
      startedAt: new Date(record.startedAt),
      endAt: new Date(record.endAt),
      metadata: record.metadata,
      limits: record.limits,
      address: host.network.slot(record.slot, record.id).address,
      ...(record.envdAccessToken && { envdAccessToken: record.envdAccessToken }),
    };
  }

  function find(id: string): Live {
    const entry = live.get(id);
    if (!entry || entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
    return entry;
  }

  function checkTimeout(timeoutMs: number): void {
    // E2B's messages (infra timeout_helper.go), so that users see the same text.
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
      throw new CoveError('invalid_argument', 'Timeout must be greater than 0');
    if (timeoutMs > opts.maxTimeoutMs) {
      throw new CoveError(
        'invalid_argument',
        `Timeout cannot be greater than ${opts.maxTimeoutMs / 3600_000} hours`,
      );
    }
  }

  function schedule(entry: Live): void {
    clearTimeout(entry.timer);
    const delay = Math.max(0, entry.record.endAt - Date.now());
    entry.timer = setTimeout(() => {
      log.info({ sandbox: entry.record.id }, 'sandbox timed out');
      kill(entry.record.id).catch((err: unknown) =>
        log.error({ err, sandbox: entry.record.id }, 'kill on timeout failed'),
      );
    }, delay);
    entry.timer.unref();
  }

  function liveEntry(record: SandboxRecord, template?: Template): Live {
    const entry: Live = {
      record,
      users: new Map(),
      ...(template && { template }),
      processes: createProcessRegistry({
        agent: () => channel(entry),
        log: log.child({ sandbox: record.id }),
      }),
    };
    return entry;
  }

  async function attachAgent(entry: Live, fresh = false): Promise<void> {
    const { id, agentToken } = entry.record;
    const agent = await opts.connect(agentSocket(host, id), agentToken, { timeoutMs: opts.agentTimeoutMs });
    entry.agent = agent;
    // Before anything else is sent on the new connection, so that the listing holds only
    // processes from before it (processes.ts, adopt). A new sandbox has none.
    if (!fresh) void entry.processes.adopt();
    void agent.closed.then(() => {
      if (entry.agent !== agent || entry.killing || !live.has(id)) return;
      entry.agent = undefined;
      log.warn({ sandbox: id }, 'agent channel closed; checking the sandbox');
      void recoverAgent(entry);
    });
  }

  // The channel dropped while we still serve the sandbox: reconnect if it runs, else remove it.
  async function recoverAgent(entry: Live): Promise<void> {
    const id = entry.record.id;
    try {
      if ((await host.runtime.status(id)) === 'running') return await attachAgent(entry);
    } catch (err) {
      log.warn({ err, sandbox: id }, 'agent did not come back');
    }
    await kill(id).catch((err: unknown) => log.error({ err, sandbox: id }, 'removing a dead sandbox failed'));
  }

  async function create(input: CreateSandboxInput): Promise<SandboxInfo> {
    checkTimeout(input.timeoutMs);
    const template: Template = await templates.get(input.template);
    const now = Date.now();
    const record = store.insertSandbox(
      {
        id: newSandboxId(),
        templateName: template.name,
        templateHash: template.hash,
        state: 'starting',
        agentToken: newToken(),
        ...(input.secure && { envdAccessToken: newToken() }),
        limits: template.limits,
        metadata: input.metadata ?? {},
        envVars: input.envVars ?? {},
        startedAt: now,
        endAt: now + input.timeoutMs,
      },
      host.network.maxSlots,
    );
    const entry = liveEntry(record, template);
    live.set(record.id, entry);
    try {
      await provision(host, {
        id: record.id,
        slot: record.slot,
        templateRootfs: template.rootfs,
        limits: record.limits,
        agentToken: record.agentToken,
      });
      await attachAgent(entry, true).catch(async (err: unknown) => {
        await teardown(host, record.id, record.slot);
        throw err;
      });
    } catch (err) {
      live.delete(record.id);
      store.deleteSandbox(record.id);
      throw err instanceof CoveError
        ? err
        : new CoveError('internal', `sandbox create failed: ${String(err)}`, { cause: err });
    }
    store.updateSandbox(record.id, { state: 'running' });
    record.state = 'running';
    schedule(entry);
    log.info({ sandbox: record.id, template: template.name, ms: Date.now() - now }, 'sandbox created');
    return info(record);
  }

  function kill(id: string): Promise<void> {
    const entry = live.get(id);
    if (!entry) return Promise.reject(new CoveError('not_found', `sandbox ${id} not found`));
    entry.killing ??= (async () => {
      clearTimeout(entry.timer);
      store.updateSandbox(id, { state: 'killing' });
      events.emit('killed', id); // unreachable from here on: edges drop its connections now
      entry.processes.close();
      entry.agent?.close();
      await teardown(host, id, entry.record.slot);
      store.deleteSandbox(id);
      live.delete(id);
      log.info({ sandbox: id }, 'sandbox killed');
    })();
    return entry.killing;
  }

  async function user(id: string, name: string): Promise<SandboxUser> {
    const entry = find(id);
    const cached = entry.users.get(name);
    if (cached) return cached;
    const agent = channel(entry);
    const root = { uid: 0, gid: 0 };
    const [passwd, group] = await Promise.all([
      readSmall(agent, '/etc/passwd', root),
      readSmall(agent, '/etc/group', root),
    ]);
    const resolved = resolveUser(name, passwd, group);
    entry.users.set(name, resolved);
    return resolved;
  }

  function channel(entry: Live): AgentClient {
    if (!entry.agent)
      throw new CoveError('unavailable', `sandbox ${entry.record.id} is not reachable right now`);
    return entry.agent;
  }

  return {
    events,

    /** Reconciles the store with the host: adopts what runs, removes what nobody owns. */
    async start(): Promise<ReconcileReport> {
      await host.runtime.init();
      await host.network.init();
      return reconcile({
        store,
        host,
        log,
        adopt: async (record) => {
          // A template rebuilt or removed since keeps its running sandboxes: its defaults
          // are then read again at the next exec, or fall back to root.
          const template = await templates.get(record.templateName).catch(() => undefined);
          const entry = liveEntry(record, template);
          await attachAgent(entry);
          live.set(record.id, entry);
          schedule(entry);
        },
      });
    },

    create,
    kill,
    user,

    get(id: string): SandboxInfo {
      return info(find(id).record);
    },

    list(): SandboxInfo[] {
      return [...live.values()].filter((e) => !e.killing).map((e) => info(e.record));
    },

    setTimeout(id: string, timeoutMs: number): SandboxInfo {
      checkTimeout(timeoutMs);
      const entry = find(id);
      const endAt = Date.now() + timeoutMs;
      store.updateSandbox(id, { endAt });
      entry.record.endAt = endAt;
      schedule(entry);
      return info(entry.record);
    },

    /**
     * E2B's connect and refresh: the end time only ever moves later (spec 2.4). When it would
     * not, nothing is written and endAt stays exactly as it was (the SDK compares it to the ms).
     */
    extendTimeout(id: string, timeoutMs: number): SandboxInfo {
      checkTimeout(timeoutMs);
      const entry = find(id);
      const endAt = Date.now() + timeoutMs;
      if (endAt > entry.record.endAt) {
        store.updateSandbox(id, { endAt });
        entry.record.endAt = endAt;
        schedule(entry);
      }
      return info(entry.record);
    },

    /** The user a sandbox's processes run as when a request names none (E2B: the template's). */
    defaultUser(id: string): string {
      return find(id).template?.defaultUser.name ?? 'root';
    },

    /** The sandbox-wide environment given at create (E2B `envVars`). */
    envVars(id: string): Record<string, string> {
      return { ...find(id).record.envVars };
    },

    agent(id: string): AgentClient {
      return channel(find(id));
    },

    processes(id: string): ProcessRegistry {
      return find(id).processes;
    },

    async exec(id: string, input: ExecInput, handlers: ProcessHandlers): Promise<AgentProcess> {
      const entry = find(id);
      if (input.argv.length === 0)
        throw new CoveError('invalid_argument', 'a command needs at least one argument');
      const template = (entry.template ??= await templates.get(entry.record.templateName));
      const who = await user(id, input.user ?? template.defaultUser.name);
      const env = {
        ...template.env,
        HOME: who.home,
        USER: who.name,
        LOGNAME: who.name,
        SHELL: who.shell,
        ...entry.record.envVars,
        ...input.env,
      };
      return channel(entry).spawn(
        {
          argv: input.argv,
          env,
          cwd: input.cwd ?? who.home,
          uid: who.uid,
          gid: who.gid,
          groups: who.groups,
          ...(input.pty && { pty: input.pty }),
          stdin: input.stdin ?? false,
          ...(input.tag !== undefined && { tag: input.tag }),
        },
        handlers,
      );
    },

    /** Stops timers and closes agent channels. Sandboxes keep running; the next start adopts them. */
    close(): void {
      for (const entry of live.values()) {
        clearTimeout(entry.timer);
        entry.processes.close();
        entry.agent?.close();
        entry.agent = undefined;
      }
      live.clear();
    },
  };
}

async function readSmall(
  agent: AgentClient,
  path: string,
  as: { uid: number; gid: number },
): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of agent.readFile(path, as)) {
    size += chunk.length;
    if (size > 1 << 20)
      throw new CoveError('invalid_argument', `${path} in the sandbox is larger than 1 MiB`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
