import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { newSandboxId, newToken } from '../core/ids.ts';
import type { Logger } from '../core/log.ts';
import type { SandboxRecord, SnapshotRecord, Store } from '../store/store.ts';
import type { Template, TemplateStore } from '../templates/index.ts';
import { sandboxDir, UID_COUNT, uidBase, type HostDeps } from './host.ts';
import { copyLayer, layerBytes } from './layers.ts';
import type { Live } from './manager.ts';
import { exclusive } from './pause.ts';
import type { CreateSandboxInput, SandboxInfo } from './types.ts';
import { imageRuntime, saveVmImage, savesWhole } from './vm-image.ts';

export interface StorageOptions {
  /** Where snapshots' layers live (COVE_HOME/snapshots). */
  dir: string;
  /** What snapshots and sandboxes paused to disk may take in all (COVE_STORAGE_BUDGET_MB). */
  budgetBytes: number;
}

/**
 * The disk budget of what outlives a running sandbox: snapshots and the layers (and images)
 * of sandboxes paused to disk. A pause, snapshot or fork that would pass it, or leave the disk
 * under STORAGE_RESERVE free, is refused with resource_exhausted before anything is written.
 */
export interface Storage {
  admit(bytes: number, what: string): Promise<void>;
  /** A sandbox paused to disk and its size; untrack when it resumes or is killed. */
  track(id: string, bytes: number): void;
  untrack(id: string): void;
}

/** Kept free on the disk of COVE_HOME whatever the budget says: the store and running sandboxes need it. */
const STORAGE_RESERVE = 256 << 20;
const MAX_FORKS = 16;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const mib = (bytes: number) => Math.ceil(bytes / 2 ** 20);

/** A sandbox's layer to start from, and the template build it goes on (manager.createFrom). */
export interface Seed {
  template: Template;
  seed: { upper: string; uidBase: number };
  /**
   * A memory image to restore instead of booting, the channel token its agent holds
   * (fork-memory.ts), and the backend that saved it: the one it runs on, whatever the default.
   */
  restore?: { image: string; agentToken: string; runtime?: string | undefined };
}

/** What a fork is created with: the source's template, metadata, env, lifecycle and security. */
/** A fork request: how many, for how long, and the key asking (the forks' owner). */
export interface ForkRequest {
  count: number;
  timeoutMs: number;
  owner?: string | undefined;
}

/**
 * The runtime services' variables carry a token minted for the source (services.ts): a fork
 * gets its own, for its own id and its owner, from the manager's sandboxEnv, as any create.
 */
function withoutServiceToken(envVars: Record<string, string>): Record<string, string> {
  const token = envVars.COVE_SERVICES_TOKEN;
  if (token === undefined) return envVars;
  return Object.fromEntries(
    Object.entries(envVars).filter(([k, v]) => v !== token && k !== 'COVE_SERVICES_URL'),
  );
}

export function forkInput(
  record: SandboxRecord,
  { count, timeoutMs, owner }: ForkRequest,
): CreateSandboxInput {
  if (!Number.isInteger(count) || count < 1 || count > MAX_FORKS)
    throw new CoveError('invalid_argument', `count must be from 1 to ${MAX_FORKS}`);
  return {
    template: record.templateName,
    timeoutMs,
    secure: record.envdAccessToken !== undefined,
    metadata: record.metadata,
    envVars: withoutServiceToken(record.envVars),
    ...(owner !== undefined && { owner }),
    // A fork is under the source's network policy (rules, upstream proxy, identity tokens
    // included), as E2B's are: without it, a fork of a locked-down sandbox had open internet.
    ...(record.network && { network: record.network }),
    ...(record.lifecycle && { lifecycle: record.lifecycle }),
    // The same volumes at the same paths, as E2B's forks (infra: a fork resumes its source's
    // snapshot config): a volume is shared storage, not part of the files copied.
    ...(record.volumeMounts?.length && { volumeMounts: record.volumeMounts }),
  };
}

/** Each fork's sandbox, or why it failed: one failed fork does not fail the others. */
export function forkResults(settled: PromiseSettledResult<SandboxInfo>[]): ForkResult[] {
  return settled.map((r) =>
    r.status === 'fulfilled'
      ? { sandbox: r.value }
      : {
          error:
            r.reason instanceof CoveError
              ? r.reason
              : new CoveError('internal', `fork failed: ${String(r.reason)}`, { cause: r.reason }),
        },
  );
}

export type ForkResult = { sandbox: SandboxInfo } | { error: CoveError };

/**
 * Snapshots (spec 2.14) and forks (2.10) of a sandbox's filesystem. A snapshot is a copy of
 * the writable layer, taken while the sandbox is frozen when the runtime can freeze it (so
 * the copy is consistent), stored under `dir/<id>/upper` with the host uid range it was
 * written in; a sandbox created from it gets its own copy with owners shifted to its range, so
 * sandboxes from one snapshot share nothing. A fork is a snapshot no one names, removed once
 * the forks are built. Memory is not part of a snapshot, and forks here boot fresh; a fork
 * with memory (runsc) is fork-memory.ts, which falls back to this one. A VM (microvm) is
 * saved whole instead, memory and disk, while it runs on (vm-image.ts): sandboxes from its
 * snapshots and its forks are restored with its processes.
 */
export function createSnapshotOps(deps: {
  store: Store;
  host: HostDeps;
  log: Logger;
  templates: TemplateStore;
  find: (id: string) => Live;
  options: StorageOptions;
}) {
  const { store, host, log, options } = deps;
  const pausedBytes = new Map<string, number>();

  const storage: Storage = {
    async admit(bytes, what) {
      let used = 0;
      for (const s of store.listSnapshots()) used += s.sizeBytes;
      for (const b of pausedBytes.values()) used += b;
      if (used + bytes > options.budgetBytes) {
        throw new CoveError(
          'insufficient_storage',
          `${what} needs ${mib(bytes)} MiB of disk, but snapshots and paused sandboxes already use ` +
            `${mib(used)} of the ${mib(options.budgetBytes)} MiB budget (COVE_STORAGE_BUDGET_MB): ` +
            'delete snapshots or kill paused sandboxes',
        );
      }
      await mkdir(options.dir, { recursive: true, mode: 0o700 });
      const st = await statfs(options.dir);
      const free = st.bavail * st.bsize;
      if (free < bytes + STORAGE_RESERVE) {
        throw new CoveError(
          'insufficient_storage',
          `${what} needs ${mib(bytes)} MiB of disk, but only ${mib(free)} MiB are free where ${options.dir} is`,
        );
      }
    },
    track: (id, bytes) => void pausedBytes.set(id, bytes),
    untrack: (id) => void pausedBytes.delete(id),
  };

  const templateRef = async (name: string, hash: string, owner: string) => {
    const t = await deps.templates.getBuild(name, hash).catch(() => undefined);
    return t && join(dirname(t.rootfs), 'refs', owner);
  };

  /** Copies a sandbox's writable layer to `dest` (frozen meanwhile when it runs and can be). */
  async function copyOf(entry: Live, dest: string, what: string): Promise<number> {
    const { id, slot, state } = entry.record;
    if (entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
    if (state !== 'running' && state !== 'paused')
      throw new CoveError('conflict', `sandbox ${id} is not running yet`);
    // A VM's files are in its disk image, not in an overlay's upper directory.
    if (host.runtime.get(entry.record.runtime).capabilities.has('guest-kernel'))
      throw new CoveError('conflict', `${what}: not supported yet on the ${entry.record.runtime} backend`);
    const upper = join(sandboxDir(host, id), 'upper');
    const bytes = await layerBytes(upper);
    await storage.admit(bytes, what);
    const freeze = state === 'running' && host.runtime.get(entry.record.runtime).capabilities.has('pause');
    if (freeze) await host.runtime.freeze(id);
    try {
      const base = uidBase(slot);
      await copyLayer(upper, dest, { fromBase: base, toBase: base, count: UID_COUNT });
    } catch (err) {
      await rm(dest, { recursive: true, force: true });
      throw new CoveError('internal', `${what} failed: ${String(err)}`, { cause: err });
    } finally {
      if (freeze) await host.runtime.thaw(id);
    }
    return bytes;
  }

  async function create(sandboxId: string, opts: { name?: string } = {}): Promise<SnapshotRecord> {
    if (opts.name !== undefined && !NAME.test(opts.name))
      throw new CoveError('invalid_argument', 'a snapshot name is 1-128 letters, digits, ".", "_" or "-"');
    if (opts.name !== undefined && store.getSnapshot(opts.name))
      throw new CoveError('already_exists', `a snapshot named ${opts.name} already exists`);
    const entry = deps.find(sandboxId);
    return exclusive(entry, async () => {
      const started = Date.now();
      const id = `snap${newSandboxId().slice(4)}`;
      const dir = join(options.dir, id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      try {
        const what = `a snapshot of ${sandboxId}`;
        const sizeBytes = savesWhole(host, entry)
          ? await saveVmImage({ host, storage }, entry, dir, what)
          : await copyOf(entry, join(dir, 'upper'), what);
        const { record } = entry;
        const snapshot: SnapshotRecord = {
          id,
          ...(opts.name !== undefined && { name: opts.name }),
          sandboxId,
          templateName: record.templateName,
          templateHash: record.templateHash,
          uidBase: uidBase(record.slot),
          limits: record.limits,
          metadata: record.metadata,
          envVars: record.envVars,
          sizeBytes,
          createdAt: Date.now(),
          ...(record.volumeMounts?.length && { volumeMounts: record.volumeMounts }),
        };
        store.insertSnapshot(snapshot);
        const ref = await templateRef(record.templateName, record.templateHash, id);
        if (ref)
          await mkdir(dirname(ref), { recursive: true }).then(() => writeFile(ref, `${options.dir}\n`));
        log.info(
          { sandbox: sandboxId, snapshot: id, bytes: sizeBytes, ms: Date.now() - started },
          'snapshot created',
        );
        return snapshot;
      } catch (err) {
        await rm(dir, { recursive: true, force: true });
        throw err;
      }
    });
  }

  async function remove(idOrName: string): Promise<void> {
    const snapshot = store.getSnapshot(idOrName);
    if (!snapshot) throw new CoveError('not_found', `snapshot ${idOrName} not found`);
    store.deleteSnapshot(snapshot.id); // first: a crash then leaves a directory start() removes
    await rm(join(options.dir, snapshot.id), { recursive: true, force: true });
    const ref = await templateRef(snapshot.templateName, snapshot.templateHash, snapshot.id);
    if (ref) await rm(ref, { force: true });
    log.info({ snapshot: snapshot.id }, 'snapshot deleted');
  }

  async function buildOf(name: string, hash: string): Promise<Template> {
    return deps.templates.getBuild(name, hash).catch((err: unknown) => {
      throw new CoveError('unavailable', `template build ${name}/${hash} is gone`, { cause: err });
    });
  }

  return {
    storage,
    create,
    remove,

    /** Oldest first; filtered by source sandbox and name (spec 2.14). */
    list(filter: { sandboxId?: string; name?: string } = {}): SnapshotRecord[] {
      return store
        .listSnapshots()
        .filter((s) => filter.sandboxId === undefined || s.sandboxId === filter.sandboxId)
        .filter((s) => filter.name === undefined || s.name === filter.name);
    },

    /** What to build a sandbox of template `idOrName` from, when that names a snapshot. */
    seedOf(idOrName: string): Promise<Seed> | undefined {
      const snapshot = store.getSnapshot(idOrName);
      if (!snapshot) return undefined;
      const image = join(options.dir, snapshot.id, 'image'); // a VM's memory and disk (vm-image.ts)
      return buildOf(snapshot.templateName, snapshot.templateHash).then(async (template) => ({
        template,
        seed: { upper: join(options.dir, snapshot.id, 'upper'), uidBase: snapshot.uidBase },
        // The agent on a VM's port takes any token (src/runtime/microvm/README.md).
        ...(existsSync(image) && {
          restore: { image, agentToken: newToken(), runtime: await imageRuntime(host, image) },
        }),
      }));
    },

    /** `count` new sandboxes from the source's files; the source keeps running as it was. */
    async fork(
      sandboxId: string,
      input: ForkRequest,
      createFrom: (from: Seed, input: CreateSandboxInput) => Promise<SandboxInfo>,
    ): Promise<ForkResult[]> {
      const entry = deps.find(sandboxId);
      const { record } = entry;
      const create = forkInput(record, input);
      const template = await buildOf(record.templateName, record.templateHash);
      const dir = join(options.dir, `.fork-${randomBytes(8).toString('hex')}`);
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const upper = join(dir, 'upper');
        const whole = savesWhole(host, entry);
        await exclusive(entry, () =>
          whole
            ? saveVmImage({ host, storage }, entry, dir, `a fork of ${sandboxId}`)
            : copyOf(entry, upper, `a fork of ${sandboxId}`),
        );
        const seed: Seed = {
          template,
          seed: { upper, uidBase: uidBase(record.slot) },
          ...(whole && {
            restore: { image: join(dir, 'image'), agentToken: record.agentToken, runtime: record.runtime },
          }),
        };
        const settled = await Promise.allSettled(
          Array.from({ length: input.count }, () => createFrom(seed, create)),
        );
        return forkResults(settled);
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    },

    /** At start: removes snapshot directories no record names (a crash mid-copy or mid-delete). */
    async reconcile(): Promise<string[]> {
      const known = new Set(store.listSnapshots().map((s) => s.id));
      const removed: string[] = [];
      for (const name of await readdir(options.dir).catch(() => [] as string[])) {
        if (known.has(name)) continue;
        await rm(join(options.dir, name), { recursive: true, force: true });
        removed.push(name);
      }
      if (removed.length > 0) log.info({ removed }, 'removed snapshot directories no record names');
      return removed;
    },
  };
}
