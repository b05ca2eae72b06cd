import { CoveError } from '../core/errors.ts';
import type { RuntimeDriver, SandboxSpec, SandboxStatus } from './driver.ts';

/**
 * The backends one Cove serves with, by name: the server's default (`cove serve --runtime`)
 * and whatever a template asks for (`runtime` in its recipe). It is itself a driver for the
 * calls that know only an id (status, destroy, checkpoint, ...): those go to the backend that
 * holds the sandbox, found in each backend's own state (so reclaim after a crash and a change
 * of the default both find it). `capabilities` are the default backend's: a caller that has a
 * sandbox's record asks `get(record.runtime).capabilities` instead.
 */
export interface RuntimeSet extends RuntimeDriver {
  checkpoint(id: string, imageDir: string, opts?: { withDisk?: boolean }): Promise<void>;
  restore(spec: SandboxSpec, imageDir: string): Promise<{ pid: number }>;
  freeze(id: string): Promise<void>;
  thaw(id: string): Promise<void>;
  relisten(id: string): Promise<void>;
  readonly defaultName: string;
  readonly names: readonly string[];
  /** The backend called `name` (the default when undefined); invalid_argument when unknown. */
  get(name?: string): RuntimeDriver;
}

export function createRuntimeSet(drivers: RuntimeDriver[], defaultName: string): RuntimeSet {
  const byName = new Map(drivers.map((d) => [d.name, d]));
  const names = [...byName.keys()];
  const get = (name?: string): RuntimeDriver => {
    const driver = byName.get(name ?? defaultName);
    if (!driver)
      throw new CoveError(
        'invalid_argument',
        `unknown runtime '${name ?? defaultName}': one of ${names.join(', ')}`,
      );
    return driver;
  };
  const fallback = get(defaultName);
  const inited = new Set<string>();

  // The backends that hold `id` (normally one); the default first, so a live sandbox costs one look.
  async function holders(id: string): Promise<RuntimeDriver[]> {
    const found: RuntimeDriver[] = [];
    for (const d of [fallback, ...drivers.filter((x) => x !== fallback)]) {
      if (inited.has(d.name) && (await d.list()).includes(id)) found.push(d);
    }
    return found;
  }
  async function holder(id: string): Promise<RuntimeDriver> {
    const [d] = await holders(id);
    if (!d) throw new CoveError('not_found', `no runtime holds sandbox ${id}`);
    return d;
  }

  return {
    name: fallback.name,
    capabilities: fallback.capabilities,
    defaultName,
    names,
    get,

    /**
     * Prepares the default backend (its failure is the server's failure) and every other one
     * it can: a missing runsc must not stop a crun server, but a runsc template then fails
     * at create with the reason.
     */
    async init() {
      await fallback.init();
      inited.add(fallback.name);
      for (const d of drivers) {
        if (d === fallback) continue;
        await d.init().then(
          () => inited.add(d.name),
          () => undefined,
        );
      }
    },

    async create(spec: SandboxSpec) {
      const d = get(spec.runtime);
      if (!inited.has(d.name)) await d.init().then(() => inited.add(d.name));
      return d.create(spec);
    },

    async start(id: string) {
      await (await holder(id)).start(id);
    },

    async status(id: string): Promise<SandboxStatus> {
      const [d] = await holders(id);
      return d ? d.status(id) : 'missing';
    },

    async list() {
      const all = await Promise.all(drivers.filter((d) => inited.has(d.name)).map((d) => d.list()));
      return [...new Set(all.flat())];
    },

    async destroy(id: string) {
      // Held by none (a create that failed half-way): every backend removes what it may have
      // left (cgroups), each destroy being idempotent.
      const found = await holders(id);
      for (const d of found.length > 0 ? found : drivers.filter((x) => inited.has(x.name)))
        await d.destroy(id);
    },

    async freeze(id: string) {
      const d = await holder(id);
      if (!d.freeze) throw new CoveError('conflict', `runtime ${d.name} cannot freeze a sandbox`);
      await d.freeze(id);
    },

    async thaw(id: string) {
      const d = await holder(id);
      if (!d.thaw) throw new CoveError('conflict', `runtime ${d.name} cannot thaw a sandbox`);
      await d.thaw(id);
    },

    async relisten(id: string) {
      const d = await holder(id);
      await d.relisten?.(id);
    },

    async checkpoint(id: string, imageDir: string, opts?: { withDisk?: boolean }) {
      const d = await holder(id);
      if (!d.checkpoint) throw new CoveError('conflict', `runtime ${d.name} cannot checkpoint memory`);
      await d.checkpoint(id, imageDir, opts);
    },

    async restore(spec: SandboxSpec, imageDir: string) {
      const d = get(spec.runtime);
      if (!d.restore) throw new CoveError('conflict', `runtime ${d.name} cannot restore memory`);
      if (!inited.has(d.name)) await d.init().then(() => inited.add(d.name));
      return d.restore(spec, imageDir);
    },
  };
}
