import type { EventEmitter } from 'node:events';
import type { AgentClient } from '../agent-channel/client.ts';
import { dirname, join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';
import type { SandboxRecord, Store } from '../store/store.ts';
import type { Template, TemplateStore } from '../templates/index.ts';
import type { HostDeps, ProvisionInput } from './host.ts';
import type { Live, ManagerEvents } from './manager.ts';
import { forkWithMemory } from './fork-memory.ts';
import { createPauseOps } from './pause.ts';
import { createTemplateMemory } from './template-memory.ts';
import { applyNetwork } from './network.ts';
import type { ProcessRegistry } from './processes.ts';
import { createSnapshotOps, type ForkRequest, type Seed, type StorageOptions } from './snapshot.ts';
import type { CreateSandboxInput, SandboxInfo } from './types.ts';

/** What of the manager's closure pause, snapshots and forks use (manager.ts builds it). */
export interface ManagerCore {
  store: Store;
  host: HostDeps;
  log: Logger;
  templates: TemplateStore;
  events: EventEmitter<ManagerEvents>;
  live: Map<string, Live>;
  find: (id: string) => Live;
  schedule: (entry: Live) => void;
  attachAgent: (entry: Live, fresh?: boolean) => Promise<void>;
  checkTimeout: (timeoutMs: number) => void;
  info: (record: SandboxRecord) => SandboxInfo;
}

export type { StorageOptions };

/** What a call that needs a paused sandbox's processes gets (the gateway answers 502 before). */
export const pausedError = (id: string) =>
  new CoveError('conflict', `sandbox ${id} is paused: connect resumes it`);

/** The sandbox's agent, or why there is none (paused: conflict; between states: unavailable). */
export function agentOf(entry: Live): AgentClient {
  const { id, state } = entry.record;
  if (!entry.agent && state === 'paused') throw pausedError(id);
  if (!entry.agent) throw new CoveError('unavailable', `sandbox ${id} is not reachable right now`);
  return entry.agent;
}

/** A create's input plus, for snapshots and forks, the writable layer to start from. */
export type BuildInput = CreateSandboxInput & { seed?: ProvisionInput['seed']; restore?: Seed['restore'] };

/**
 * Pause/resume (pause.ts) and snapshots/forks (snapshot.ts) wired to the manager: what they
 * need of it, and the methods the manager exposes for them (`api`).
 */
export function createPausing(
  opts: ManagerCore & {
    /** Default: `snapshots/` beside the sandboxes' directory, 10 GiB. */
    storage: StorageOptions | undefined;
    liveEntry: (record: SandboxRecord, template?: Template) => Live;
    newProcesses: (entry: Live) => ProcessRegistry;
    kill: (id: string) => Promise<void>;
  },
  /** Builds a `starting` sandbox of a template build (admission included); without an input,
   * a hidden (pooled) one, never in `live` (template-memory.ts captures). */
  build: (template: Template, input?: BuildInput) => Promise<Live>,
) {
  const core: ManagerCore = opts;
  const { store, log, live } = core;
  const storage = opts.storage ?? {
    dir: join(dirname(core.host.sandboxesDir), 'snapshots'),
    budgetBytes: 10 * 2 ** 30,
  };
  const snapshots = createSnapshotOps({ ...core, options: storage });
  const memory = createTemplateMemory({ ...core, hidden: (t) => build(t) });
  const pauses = createPauseOps({ ...core, storage: snapshots.storage, newProcesses: opts.newProcesses });

  /** A sandbox built on a given template build and writable layer (a snapshot's, a fork's). */
  async function createFrom(from: Seed, input: CreateSandboxInput): Promise<SandboxInfo> {
    core.checkTimeout(input.timeoutMs);
    const started = Date.now();
    const entry = await build(from.template, {
      ...input,
      seed: from.seed,
      ...(from.restore && { restore: from.restore }),
    });
    store.updateSandbox(entry.record.id, { state: 'running' });
    entry.record.state = 'running';
    // Its own policy, as any create's (forks carry their source's): without one the egress
    // proxy and its DNS know nothing of the sandbox, and names do not resolve in it.
    await applyNetwork(core.host, entry.record, () => opts.kill(entry.record.id));
    core.schedule(entry);
    const ms = Date.now() - started;
    log.info({ sandbox: entry.record.id, template: from.template.name, ms }, 'sandbox created from a layer');
    core.events.emit('created', {
      id: entry.record.id,
      template: from.template.name,
      pooled: false,
      ms,
      input,
    });
    return core.info(entry.record);
  }

  return {
    pauses,
    snapshots,
    createFrom,
    withMemory: memory.withMemory,

    /** Reconcile's hook for a `paused` record (pause.ts, adopt). */
    async adopt(record: SandboxRecord): Promise<void> {
      const template = await core.templates.get(record.templateName).catch(() => undefined);
      const entry = opts.liveEntry(record, template);
      live.set(record.id, entry);
      await pauses.adopt(entry).catch((err: unknown) => {
        live.delete(record.id);
        throw err;
      });
    },

    api: {
      pause: pauses.pause,
      resume: pauses.resume,
      /** Traffic for a paused sandbox: resumes it when its lifecycle says autoResume. */
      wake: (id: string) => pauses.wake(id),
      createSnapshot: snapshots.create,
      listSnapshots: (filter: { sandboxId?: string; name?: string } = {}) => snapshots.list(filter),
      deleteSnapshot: snapshots.remove,
      hasSnapshot: (idOrName: string) => store.getSnapshot(idOrName) !== undefined,
      getSnapshot: (idOrName: string) => store.getSnapshot(idOrName),
      /** With memory where the runtime can save the source (fork-memory.ts), else its files. */
      async fork(id: string, input: ForkRequest) {
        const entry = core.find(id);
        // A runtime that saves a sandbox while it runs (a VM's) forks from that: snapshot.ts.
        const driver = core.host.runtime.get(entry.record.runtime);
        if (driver.capabilities.has('checkpoint-memory') && !driver.snapshot) {
          const forks = await forkWithMemory(
            {
              ...core,
              storage: snapshots.storage,
              dir: storage.dir,
              newProcesses: opts.newProcesses,
              boot: pauses.boot,
              settleCheckpointed: pauses.settleCheckpointed,
              createFrom,
            },
            entry,
            input,
          );
          if (forks) return forks;
        }
        return snapshots.fork(id, input, createFrom);
      },
    },
  };
}
