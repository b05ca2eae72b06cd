import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import type { AgentClient, AgentProcess, ConnectOptions, ProcessHandlers } from '../agent-channel/client.ts';
import type { Audit } from '../audit/index.ts';
import { CoveError } from '../core/errors.ts';
import { newSandboxId, newToken } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import { outsideRequest } from '../core/request-context.ts';
import type { SandboxRecord, Store } from '../store/store.ts';
import type { Template, TemplateStore } from '../templates/index.ts';
import { agentFiles, agentSocket, provision, startingPoint, teardown, type HostDeps } from './host.ts';
import { openBuildSandbox } from './build-sandbox.ts';
import { agentOf, createPausing, type BuildInput, type StorageOptions } from './pause-wiring.ts';
import type { Live, ManagerEvents } from './live.ts';
import { spawnOptions, type ExecInput } from './exec.ts';
import { createLimiter } from './limiter.ts';
import { applyNetwork, networkFields, networkMethods } from './network.ts';
import { createWarmPool, type PoolOptions } from './pool.ts';
import { createProcessRegistry, type ProcessRegistry } from './processes.ts';
import { reconcile, type ReconcileReport } from './reconcile.ts';
import { shareSandboxEnv, startTemplateServer } from './startup.ts';
import { timeoutMethods, validateTimeout } from './timeout.ts';
import { toInfo, type CreateSandboxInput, type SandboxInfo } from './types.ts';
import { cachedUser, prefetchForClaim, prefetchUser, type SandboxUser } from './users.ts';

export type { CreateSandboxInput, ExecInput, Live, ManagerEvents, SandboxInfo };

export interface ManagerOptions {
  store: Store;
  templates: TemplateStore;
  host: HostDeps;
  connect: (socket: string, token: string, opts?: ConnectOptions) => Promise<AgentClient>;
  log: Logger;
  maxTimeoutMs: number;
  /** How long a started sandbox's agent may take to answer. */
  agentTimeoutMs: number;
  /** Warm pools; none when absent. */
  pool?: PoolOptions;
  /** Cold builds at once, and how many may wait (limiter.ts). */
  builds?: { concurrency: number; queue: number };
  /** Variables every created sandbox gets (runtime services' token), under the caller's own. */
  sandboxEnv?: (id: string, owner: string | undefined) => Record<string, string>;
  audit?: Audit; // for records of actions beyond the events below (src/audit/README.md)
  observeAgent?: (id: string, agent: AgentClient) => AgentClient; // src/audit/agent.ts
  storage?: StorageOptions; // snapshots' directory, the disk budget of what outlives a sandbox
}

export type Manager = ReturnType<typeof createManager>;

/**
 * The sandbox state machine: starting → running → (killing) → gone. A state is written to
 * the store before it is acknowledged; timers kill a sandbox at its end time; `start()`
 * adopts what still runs after a restart and reclaims what nobody owns.
 */
export function createManager(opts: ManagerOptions) {
  const { store, templates, host, log } = opts;
  const live = new Map<string, Live>();
  const events = new EventEmitter<ManagerEvents>();

  const info = (record: SandboxRecord): SandboxInfo =>
    toInfo(record, host.network.slot(record.slot, record.id).address);

  function find(id: string): Live {
    const entry = live.get(id);
    if (!entry || entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
    return entry;
  }

  const checkTimeout = (timeoutMs: number) => validateTimeout(timeoutMs, opts.maxTimeoutMs);

  function schedule(entry: Live): void {
    clearTimeout(entry.timer);
    if (entry.record.state === 'paused') return; // a paused sandbox waits for connect or kill
    const delay = Math.max(0, entry.record.endAt - Date.now());
    // Outside the request that scheduled it: a timeout is nobody's action.
    entry.timer = outsideRequest(() =>
      setTimeout(() => {
        log.info({ sandbox: entry.record.id }, 'sandbox timed out');
        if (entry.record.lifecycle?.onTimeout === 'pause') return void paused.pauses.onTimeout(entry);
        kill(entry.record.id, 'timeout').catch((err: unknown) =>
          log.error({ err, sandbox: entry.record.id }, 'kill on timeout failed'),
        );
      }, delay),
    );
    entry.timer.unref();
  }

  function liveEntry(record: SandboxRecord, template?: Template): Live {
    const entry = { record, users: new Map(), ...(template && { template }) } as Live;
    entry.processes = registry(entry);
    return entry;
  }

  const registry = (entry: Live): ProcessRegistry =>
    createProcessRegistry({ agent: () => agentOf(entry), log: log.child({ sandbox: entry.record.id }) });

  async function attachAgent(entry: Live, fresh = false): Promise<void> {
    const { id, agentToken, runtime } = entry.record;
    const options = { timeoutMs: opts.agentTimeoutMs, host: agentFiles(host, id, runtime) };
    const raw = await opts.connect(agentSocket(host, id), agentToken, options);
    const agent = opts.observeAgent?.(id, raw) ?? raw;
    entry.agent = agent;
    // Before anything else is sent on the new connection, so that the listing holds only
    // processes from before it (processes.ts, adopt). A new sandbox has none.
    if (!fresh) void entry.processes.adopt();
    void agent.closed.then(() => {
      if (entry.agent !== agent || entry.killing) return;
      entry.agent = undefined;
      if (!live.has(id)) return; // pooled: claim() skips and removes it
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
    await kill(id, 'died').catch((err: unknown) =>
      log.error({ err, sandbox: id }, 'removing a dead sandbox failed'),
    );
  }

  /**
   * Builds a sandbox of `template` from scratch: the record first (it holds the slot), then
   * the host side, then the agent. A `pooled` one waits unclaimed, outside `live`.
   */
  async function build(template: Template, state: 'starting' | 'pooled', input?: BuildInput) {
    const now = Date.now();
    const id = newSandboxId();
    const record = store.insertSandbox(
      {
        id,
        templateName: template.name,
        templateHash: template.hash,
        state,
        agentToken: input?.restore?.agentToken ?? newToken(),
        ...(input?.secure && { envdAccessToken: newToken() }),
        ...networkFields(input),
        limits: template.limits,
        // A memory image runs on the backend that saved it (vm-image.ts), not the default's.
        runtime: input?.restore?.runtime ?? template.runtime ?? host.runtime.defaultName,
        metadata: input?.metadata ?? {},
        envVars: input ? { ...opts.sandboxEnv?.(id, input.owner), ...input.envVars } : {},
        startedAt: now,
        endAt: now + (input?.timeoutMs ?? 0),
        ...(input?.lifecycle && { lifecycle: input.lifecycle }),
        ...(input?.volumeMounts?.length && { volumeMounts: input.volumeMounts }),
      },
      host.network.maxSlots,
    );
    const entry = liveEntry(record, template);
    if (state === 'starting') live.set(record.id, entry);
    try {
      const { id, slot, limits, agentToken, runtime } = record;
      const volumes = record.volumeMounts ?? [];
      const from = startingPoint(template.rootfs, input);
      await provision(host, { id, slot, limits, agentToken, runtime, volumes, ...from });
      await attachAgent(entry, !input?.restore).catch(async (err: unknown) => {
        await teardown(host, id, slot);
        throw err;
      });
      if (template.start && !input?.restore) {
        const server = { ...template, start: template.start };
        await startTemplateServer(agentOf(entry), server, record.envVars, info(record).address).catch(
          async (err: unknown) => {
            live.delete(id); // first: the agent's close below must not look like a death
            entry.agent?.close();
            await teardown(host, id, slot);
            throw err;
          },
        );
      }
    } catch (err) {
      live.delete(record.id);
      store.deleteSandbox(record.id);
      throw err instanceof CoveError
        ? err
        : new CoveError('internal', `sandbox create failed: ${String(err)}`, { cause: err });
    }
    return entry;
  }

  const builds = createLimiter(opts.builds ?? { concurrency: 4, queue: 1024 });
  const pool = createWarmPool<Live>({
    ...(opts.pool ?? { min: 0, max: 0, budget: 0, templates: [], idleShrinkMs: 60_000 }),
    log,
    fill: async (name) => {
      const template = await templates.get(name);
      const entry = await build(template, 'pooled');
      await prefetchForClaim(entry.users, template, () => agentOf(entry));
      return { value: entry, template: name, hash: template.hash };
    },
    discard: async ({ value: entry }) => {
      entry.processes.close();
      entry.agent?.close();
      await teardown(host, entry.record.id, entry.record.slot);
      store.deleteSandbox(entry.record.id);
    },
  });

  // A ready pooled sandbox of this build whose agent is still connected, claimed for good.
  function claim(template: Template, input: CreateSandboxInput, now: number): Live | undefined {
    for (
      let entry = pool.take(template.name, template.hash);
      entry;
      entry = pool.take(template.name, template.hash)
    ) {
      if (!entry.agent) {
        void teardown(host, entry.record.id, entry.record.slot).then(() =>
          store.deleteSandbox(entry.record.id),
        );
        continue;
      }
      const claimed = {
        state: 'running' as const,
        startedAt: now,
        endAt: now + input.timeoutMs,
        metadata: input.metadata ?? {},
        envVars: { ...opts.sandboxEnv?.(entry.record.id, input.owner), ...input.envVars },
        ...(input.secure && { envdAccessToken: newToken() }),
        ...networkFields(input),
        ...(input.lifecycle && { lifecycle: input.lifecycle }),
      };
      store.updateSandbox(entry.record.id, claimed);
      Object.assign(entry.record, claimed);
      live.set(entry.record.id, entry);
      return entry;
    }
    return undefined;
  }

  async function create(input: CreateSandboxInput): Promise<SandboxInfo> {
    checkTimeout(input.timeoutMs);
    const fromSnapshot = paused.snapshots.seedOf(input.template); // a snapshot is a template (2.14)
    if (fromSnapshot) return paused.createFrom(await fromSnapshot, input);
    const template: Template = await templates.get(input.template);
    const now = Date.now();
    // A pooled sandbox is already running: volumes are mounted only as a sandbox starts.
    let entry = input.volumeMounts?.length ? undefined : claim(template, input, now);
    const pooled = entry !== undefined;
    if (entry && template.start) await shareSandboxEnv(agentOf(entry), entry.record.envVars);
    if (!entry) {
      const built = (entry = await start(template, paused.withMemory(template, input)));
      store.updateSandbox(entry.record.id, { state: 'running' });
      entry.record.state = 'running';
      void prefetchUser(entry.users, template.defaultUser.name, () => agentOf(built));
    }
    await applyNetwork(host, entry.record, () => kill(entry.record.id));
    schedule(entry);
    const ms = Date.now() - now;
    events.emit('created', { id: entry.record.id, template: template.name, pooled, ms, input }); // logged in main.ts
    return info(entry.record);
  }

  /**
   * Unreachable at once (`killing` written, `killed` emitted), then torn down. `background`
   * resolves when unreachable (the API's kill): the record holds the slot until the teardown
   * ends, and a crash before that is cleaned up by reconcile as any half-killed sandbox. */
  function kill(
    id: string,
    reason: ManagerEvents['killed'][1] = 'requested',
    opts: { background?: boolean } = {},
  ): Promise<void> {
    const entry = live.get(id);
    if (!entry) return Promise.reject(new CoveError('not_found', `sandbox ${id} not found`));
    if (!entry.killing) {
      let unreachable!: () => void;
      entry.unreachable = new Promise<void>((resolve) => (unreachable = resolve));
      entry.killing = (async () => {
        clearTimeout(entry.timer);
        await entry.busy?.catch(() => {}); // a pause or snapshot under way ends first
        store.updateSandbox(id, { state: 'killing' });
        events.emit('killed', id, reason); // unreachable from here on: edges drop its connections now
        entry.processes.close();
        entry.agent?.close();
        unreachable();
        await teardown(host, id, entry.record.slot);
        await paused.pauses.forget(entry.record);
        store.deleteSandbox(id);
        live.delete(id);
        log.info({ sandbox: id, reason }, 'sandbox killed');
      })();
      entry.killing.catch((err: unknown) => log.error({ err, sandbox: id }, 'sandbox teardown failed'));
    }
    return opts.background ? Promise.race([entry.unreachable!, entry.killing]) : entry.killing;
  }

  function user(id: string, name: string): Promise<SandboxUser> {
    const entry = find(id);
    return cachedUser(entry.users, name, () => agentOf(entry));
  }

  const core = { store, host, log, templates, events, live, find, schedule, attachAgent, checkTimeout, info };
  const wiring = { ...core, storage: opts.storage, liveEntry, newProcesses: registry, kill };
  const start = (t: Template, input?: BuildInput) =>
    builds.run(() => build(t, input ? 'starting' : 'pooled', input));
  const paused = createPausing(wiring, start);

  return {
    events,
    /** A sandbox for one step of a template build (build-sandbox.ts); never in `live`. */
    buildSandbox: async (template: Template) =>
      openBuildSandbox({ host, store, template, ...(await build(template, 'pooled')) }),

    /** Reconciles the store with the host: adopts what runs, removes what nobody owns. */
    async start(): Promise<ReconcileReport> {
      await host.runtime.init();
      await host.network.init();
      const report = await reconcile({
        store,
        host,
        log,
        adoptPaused: (record) => paused.adopt(record),
        adopt: async (record) => {
          // A template rebuilt or removed since keeps its running sandboxes: its defaults
          // are then read again at the next exec, or fall back to root.
          const template = await templates.get(record.templateName).catch(() => undefined);
          const entry = liveEntry(record, template);
          // A checkpoint (fork, snapshot) that a crash cut short left its agent without a socket.
          if (!existsSync(agentSocket(host, record.id))) await host.runtime.relisten(record.id);
          await attachAgent(entry);
          live.set(record.id, entry);
          schedule(entry);
        },
      });
      await paused.snapshots.reconcile();
      pool.start();
      return report;
    },

    pool,

    create,
    kill,
    user,
    ...paused.api, // pause, resume, wake, fork and snapshots (pause-wiring.ts)

    get(id: string): SandboxInfo {
      return info(find(id).record);
    },

    list(): SandboxInfo[] {
      return [...live.values()].filter((e) => !e.killing).map((e) => info(e.record));
    },

    ...timeoutMethods({ store, find, schedule, info, maxTimeoutMs: opts.maxTimeoutMs }),

    ...networkMethods({ host, store, record: (id) => find(id).record, info }),

    /** The user a sandbox's processes run as when a request names none (E2B: the template's). */
    defaultUser(id: string): string {
      return find(id).template?.defaultUser.name ?? 'root';
    },

    /** The sandbox-wide environment given at create (E2B `envVars`). */
    envVars(id: string): Record<string, string> {
      return { ...find(id).record.envVars };
    },

    agent(id: string): AgentClient {
      return agentOf(find(id));
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
      return agentOf(entry).spawn(spawnOptions(template, who, entry.record.envVars, input), handlers);
    },

    /** Removes pooled sandboxes, stops timers and closes agent channels. Claimed sandboxes keep
     * running; the next start adopts them. */
    async close(): Promise<void> {
      await Promise.allSettled([...live.values()].flatMap((e) => e.killing ?? [])); // background kills end first
      await pool.drain();
      await host.network.close();
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
