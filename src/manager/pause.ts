import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import type { PausedAs, SandboxRecord } from '../store/store.ts';
import { releaseKeepingPlace, sandboxDir, stopKeepingDisk } from './host.ts';
import { layerBytes } from './layers.ts';
import type { Live } from './manager.ts';
import type { ManagerCore } from './pause-wiring.ts';
import type { ProcessRegistry } from './processes.ts';
import type { Storage } from './snapshot.ts';
import { bootFromDisk, detachAgent, imageDir, type BootOptions } from './boot.ts';
import type { SandboxInfo } from './types.ts';

export type PauseDeps = ManagerCore & {
  storage: Storage;
  newProcesses: (entry: Live) => ProcessRegistry;
};

export { detachAgent, imageDir };

/**
 * A VM's writes may still sit in its guest's page cache (its own kernel's): a files-only pause
 * has them written to its disk first (the guest's busybox, src/runtime/microvm/guest/init).
 */
async function syncGuest(entry: Live): Promise<void> {
  const agent = entry.agent;
  if (!agent) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, 60_000);
    const done = () => (clearTimeout(timer), resolve());
    agent
      .spawn(
        { argv: ['/.cove/busybox', 'sync'], env: {}, cwd: '/', uid: 0, gid: 0 },
        { onData: () => {}, onExit: done, onDetach: done },
      )
      .catch(done);
  });
}

/**
 * Runs pauses, resumes and snapshots of one sandbox one at a time: each waits for the one
 * before it, and for the work it handed to `later` (which its caller does not wait for), and
 * a failure does not block the next. A kill waits for them all (manager.ts).
 */
export function exclusive<T>(
  entry: Live,
  work: (later: (tail: Promise<unknown>) => void) => Promise<T>,
): Promise<T> {
  const tails: Array<Promise<unknown>> = [];
  const next = (entry.busy ?? Promise.resolve()).catch(() => {}).then(() => work((tail) => tails.push(tail)));
  const all = next.finally(() => Promise.allSettled(tails));
  entry.busy = all;
  void all
    .finally(() => {
      if (entry.busy === all) entry.busy = undefined;
    })
    .catch(() => {});
  return next;
}

/**
 * Pause and resume (spec 2.9, 2.4), chosen by what the runtime can do:
 * - capability 'checkpoint-memory' (runsc): the sandbox is checkpointed into an image beside its
 *   writable layer and stopped; resume restores it, processes, memory and all (`memory`);
 * - capability 'pause' (crun, where this kernel has no working CRIU): its cgroup is frozen in
 *   place (`frozen`): processes, memory and connections inside survive, but only while the host
 *   is up; a frozen sandbox found without its processes after a host restart, and every pause
 *   with `memory: false`, keeps only the writable layer (`filesystem`): resume boots it again
 *   (a new boot id), files kept, processes gone.
 * A paused sandbox keeps its record, slot (so its address and uid range) and access token, and
 * has no timer: it waits for connect, kill or, with autoResume, traffic.
 */
export function createPauseOps(deps: PauseDeps) {
  const { store, host, log } = deps;
  /** Sandboxes paused to disk whose host objects are known released (boot need not repeat it). */
  const released = new WeakSet<Live>();
  /** Checkpointed sandboxes whose root filesystem mount and network namespace were kept
   * (capability 'restore-in-place'): a resume restores into them, with nothing to set up. */
  const inPlace = new WeakSet<Live>();

  function setState(
    entry: Live,
    patch: { state: 'running' | 'paused'; paused: PausedAs | null; endAt?: number },
  ) {
    store.updateSandbox(entry.record.id, patch);
    entry.record.state = patch.state;
    if (patch.paused === null) delete entry.record.paused;
    else entry.record.paused = patch.paused;
    if (patch.endAt !== undefined) entry.record.endAt = patch.endAt;
  }

  // A paused sandbox's layer needs its template build while unmounted: the template store
  // keeps a build whose refs/ holds a file (templates/store.ts).
  async function refPath(record: SandboxRecord): Promise<string | undefined> {
    const t = await deps.templates.getBuild(record.templateName, record.templateHash).catch(() => undefined);
    return t && join(dirname(t.rootfs), 'refs', record.id);
  }
  async function holdTemplate(record: SandboxRecord): Promise<void> {
    const path = await refPath(record);
    if (!path) return;
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, `${host.sandboxesDir}\n`);
  }
  async function releaseTemplate(record: SandboxRecord): Promise<void> {
    const path = await refPath(record);
    if (path) await rm(path, { force: true });
  }

  /**
   * What a sandbox paused to disk keeps: its writable layer and its image, never its mounts;
   * a VM's writes are in its own disk layer (disk.qcow2, src/runtime/microvm) beside them.
   */
  async function keptBytes(id: string): Promise<number> {
    const layer = await layerBytes(join(sandboxDir(host, id), 'upper'));
    const vmDisk = join(sandboxDir(host, id), 'disk.qcow2');
    const disk = existsSync(vmDisk) ? await layerBytes(vmDisk) : 0;
    return layer + disk + (existsSync(imageDir(host, id)) ? await layerBytes(imageDir(host, id)) : 0);
  }

  /**
   * Stops a sandbox keeping only its directory; a memory image first where the runtime can.
   * Once the image is saved the sandbox is paused: the release of its mounts, network and
   * runtime state is handed to `later` (resume and kill wait for it).
   */
  async function stopToDisk(
    entry: Live,
    as: 'filesystem' | 'memory',
    later: (tail: Promise<unknown>) => void,
  ): Promise<PausedAs> {
    const { id } = entry.record;
    entry.processes.close();
    let kept: PausedAs = as;
    if (as === 'memory') {
      const image = imageDir(host, id);
      try {
        await mkdir(image, { recursive: true, mode: 0o700 });
        await host.runtime.checkpoint(id, image);
        const tail = (async () => {
          await settleCheckpointed(entry);
          await holdTemplate(entry.record);
          deps.storage.track(id, await keptBytes(id));
        })().catch((err: unknown) =>
          log.warn({ err, sandbox: id }, 'releasing a paused sandbox failed: its resume retries'),
        );
        later(tail);
        return kept;
      } catch (err) {
        log.warn({ err, sandbox: id }, 'checkpoint failed: keeping the filesystem only');
        await rm(image, { recursive: true, force: true });
        kept = 'filesystem';
      }
    }
    await release(entry);
    return kept;
  }

  /**
   * After a checkpoint (a pause's, a fork's): the volumes and runtime state released, the mount
   * and namespace kept for a restore in place where the runtime can; everything else.
   */
  async function settleCheckpointed(entry: Live): Promise<void> {
    const { id, slot, runtime } = entry.record;
    if (host.runtime.get(runtime).capabilities.has('restore-in-place')) {
      await releaseKeepingPlace(host, id);
      inPlace.add(entry);
    } else {
      await stopKeepingDisk(host, id, slot);
      released.add(entry);
    }
  }

  /** A paused sandbox's host objects released but its directory; its share of the disk budget. */
  async function release(entry: Live): Promise<void> {
    const { id, slot } = entry.record;
    await stopKeepingDisk(host, id, slot);
    released.add(entry);
    await holdTemplate(entry.record);
    deps.storage.track(id, await keptBytes(id));
  }

  async function pause(id: string, opts: { memory?: boolean } = {}): Promise<SandboxInfo> {
    const entry = deps.find(id);
    return exclusive(entry, async (later) => {
      const { record } = entry;
      if (entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
      if (record.state === 'paused') throw new CoveError('conflict', `sandbox ${id} is already paused`);
      if (record.state !== 'running') throw new CoveError('conflict', `sandbox ${id} is not running yet`);
      const caps = host.runtime.get(record.runtime).capabilities;
      const as: PausedAs =
        opts.memory === false
          ? 'filesystem'
          : caps.has('checkpoint-memory')
            ? 'memory'
            : caps.has('pause')
              ? 'frozen'
              : 'filesystem';
      const started = Date.now();
      if (as !== 'frozen') await deps.storage.admit(await keptBytes(id), `pausing ${id}`);
      clearTimeout(entry.timer);
      // The record says paused first: a crash from here on is finished by adopt() at the next
      // start, never taken for a dead sandbox and removed.
      setState(entry, { state: 'paused', paused: as });
      deps.events.emit('paused', id); // unreachable from here: edges drop its connections now
      if (as === 'filesystem' && caps.has('guest-kernel')) await syncGuest(entry);
      detachAgent(entry);
      try {
        if (as === 'frozen') await host.runtime.freeze(id);
        else {
          const kept = await stopToDisk(entry, as, later);
          if (kept !== as) setState(entry, { state: 'paused', paused: kept });
        }
      } catch (err) {
        if (as === 'frozen') {
          setState(entry, { state: 'running', paused: null });
          await deps.attachAgent(entry).catch(() => {});
          deps.schedule(entry);
        }
        throw err instanceof CoveError
          ? err
          : new CoveError('internal', `pausing ${id} failed: ${String(err)}`, { cause: err });
      }
      log.info({ sandbox: id, as, ms: Date.now() - started }, 'sandbox paused');
      return deps.info(record);
    });
  }

  /**
   * Brings a paused sandbox back (connect, autoResume); `memory: false` reboots it from its
   * files even when its memory was kept. A running one only has its end time extended.
   */
  async function resume(
    id: string,
    opts: { timeoutMs: number; memory?: boolean },
  ): Promise<{ info: SandboxInfo; resumed: boolean }> {
    deps.checkTimeout(opts.timeoutMs);
    const entry = deps.find(id);
    // Each step's end, in ms from the call (the log line's `steps`; bench/pause.ts prints them).
    const called = performance.now();
    const steps: Record<string, number> = {};
    const mark = (step: string) => (steps[step] = Math.round((performance.now() - called) * 10) / 10);
    return exclusive(entry, async (later) => {
      const { record } = entry;
      mark('queued'); // behind the pause's release, say
      if (entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
      const endAt = Date.now() + opts.timeoutMs;
      if (record.state === 'running') {
        if (endAt > record.endAt) {
          store.updateSandbox(id, { endAt });
          record.endAt = endAt;
          deps.schedule(entry);
        }
        return { info: deps.info(record), resumed: false };
      }
      if (record.state !== 'paused') throw new CoveError('conflict', `sandbox ${id} is not running yet`);
      const started = Date.now();
      let as = record.paused ?? 'filesystem';
      if (opts.memory === false && as !== 'filesystem') {
        if (as === 'frozen') {
          await stopKeepingDisk(host, id, record.slot);
          released.add(entry);
        }
        await rm(imageDir(host, id), { recursive: true, force: true });
        setState(entry, { state: 'paused', paused: 'filesystem' });
        as = 'filesystem';
      }
      if (as === 'frozen') {
        await host.runtime.thaw(id);
        await deps.attachAgent(entry).catch(async (err: unknown) => {
          await host.runtime.freeze(id).catch(() => {});
          throw err;
        });
      } else {
        await boot(entry, as, { later, mark });
      }
      setState(entry, { state: 'running', paused: null, endAt });
      deps.storage.untrack(id);
      later(releaseTemplate(record).catch((err: unknown) => log.warn({ err, sandbox: id }, 'template ref')));
      deps.schedule(entry);
      mark('stored');
      log.info({ sandbox: id, as, ms: Date.now() - started, steps }, 'sandbox resumed');
      return { info: deps.info(record), resumed: true };
    });
  }

  const boot = (entry: Live, as: 'filesystem' | 'memory', opts: BootOptions = {}) =>
    bootFromDisk(deps, { released, inPlace }, entry, as, opts);

  return {
    pause,
    resume,
    boot,
    settleCheckpointed,

    /** lifecycle.onTimeout 'pause'. A pause that fails leaves the sandbox running and tries again in a minute. */
    onTimeout(entry: Live): void {
      const { id } = entry.record;
      pause(id, { memory: entry.record.lifecycle?.keepMemory ?? true }).catch((err: unknown) => {
        if (entry.killing || !deps.live.has(id) || entry.record.state !== 'running') return;
        log.error({ err, sandbox: id }, 'pause on timeout failed; trying again in a minute');
        const endAt = Date.now() + 60_000;
        store.updateSandbox(id, { endAt });
        entry.record.endAt = endAt;
        deps.schedule(entry);
      });
    },

    /**
     * Traffic for a sandbox that is not running (the gateway): with autoResume a paused one is
     * resumed for its lifecycle's timeout. True when it runs afterwards.
     */
    async wake(id: string): Promise<boolean> {
      const entry = deps.live.get(id);
      if (!entry || entry.killing) return false;
      if (entry.record.state === 'running' && !entry.busy) return true;
      const lifecycle = entry.record.lifecycle;
      if (!lifecycle?.autoResume) return entry.record.state === 'running' && !entry.busy;
      await resume(id, { timeoutMs: lifecycle.timeoutMs });
      return true;
    },

    /** At start (reconcile): keeps a paused sandbox, finishing what a crash interrupted. */
    async adopt(entry: Live): Promise<void> {
      const { record } = entry;
      const { id } = record;
      if (record.paused === 'frozen') {
        const status = await host.runtime.status(id);
        if (status === 'paused') return; // still frozen: resume thaws it
        if (status === 'running') return host.runtime.freeze(id); // the pause was cut short
        // The host restarted: the processes are gone, the writable layer is on disk.
        setState(entry, { state: 'paused', paused: 'filesystem' });
      }
      if (!existsSync(join(sandboxDir(host, id), 'upper')))
        throw new CoveError('not_found', `the writable layer of paused sandbox ${id} is gone`);
      await stopKeepingDisk(host, id, record.slot);
      released.add(entry);
      if (record.paused === 'memory' && !existsSync(imageDir(host, id)))
        setState(entry, { state: 'paused', paused: 'filesystem' });
      await holdTemplate(record);
      deps.storage.track(id, await keptBytes(id));
    },

    /** A killed sandbox's claims: its template reference and its share of the disk budget. */
    async forget(record: SandboxRecord): Promise<void> {
      deps.storage.untrack(record.id);
      await releaseTemplate(record);
    },
  };
}
