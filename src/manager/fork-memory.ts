import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../core/exec.ts';
import { CoveError } from '../core/errors.ts';
import { sandboxDir, UID_COUNT, uidBase } from './host.ts';
import { copyLayer, layerBytes } from './layers.ts';
import type { Live } from './manager.ts';
import { detachAgent, exclusive, imageDir } from './pause.ts';
import type { ManagerCore } from './pause-wiring.ts';
import type { ProcessRegistry } from './processes.ts';
import {
  forkInput,
  forkResults,
  type ForkRequest,
  type ForkResult,
  type Seed,
  type Storage,
} from './snapshot.ts';
import type { CreateSandboxInput, SandboxInfo } from './types.ts';

export interface MemoryForkDeps extends ManagerCore {
  storage: Storage;
  /** Where the fork's image and layer copy wait while the forks are built. */
  dir: string;
  newProcesses: (entry: Live) => ProcessRegistry;
  /** pause.ts boot(): restores a sandbox from `imageDir`, or boots it from its files if that fails. */
  boot: (entry: Live, as: 'memory') => Promise<void>;
  /** pause.ts: what a checkpoint leaves released (the mount and namespace kept where they can be). */
  settleCheckpointed: (entry: Live) => Promise<void>;
  createFrom: (from: Seed, input: CreateSandboxInput) => Promise<SandboxInfo>;
}

/**
 * Fork with memory (spec 2.10) where the runtime can checkpoint (runsc). The source is
 * checkpointed into its pause image and restored at once under its own id, with its processes,
 * pids, address and end time (unreachable meanwhile, as in a pause: edges drop its connections
 * first); while it is stopped its writable layer is copied, so files and memory agree. Each
 * fork is then restored from that image with its own copy of the layer, a new id, address and
 * envd token. The agent in the image holds the source's channel token, so the forks keep it:
 * it only authenticates Cove to an agent over a socket only Cove reaches.
 * Undefined when the source cannot be saved (gVisor refuses open TCP connections, epoll on TCP):
 * the runtime refuses before stopping anything, and the caller forks the files instead.
 */
export async function forkWithMemory(
  deps: MemoryForkDeps,
  entry: Live,
  input: ForkRequest,
): Promise<ForkResult[] | undefined> {
  const { host, log } = deps;
  const { id } = entry.record;
  const create = forkInput(entry.record, input);
  const dir = join(deps.dir, `.fork-${randomBytes(8).toString('hex')}`);
  const started = Date.now();
  try {
    const saved = await exclusive(entry, async () => {
      const { record } = entry;
      if (entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
      if (record.state !== 'running') return false;
      const upper = join(sandboxDir(host, id), 'upper');
      await deps.storage.admit(await layerBytes(upper), `a fork of ${id}`);
      const image = imageDir(host, id);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await mkdir(image, { recursive: true, mode: 0o700 });
      deps.events.emit('paused', id); // edges reset its connections: gVisor cannot save them
      entry.processes.close();
      detachAgent(entry);
      try {
        await host.runtime.checkpoint(id, image, { withDisk: true });
      } catch (err) {
        await rm(image, { recursive: true, force: true });
        if ((await host.runtime.status(id)) !== 'running') throw err; // the source died: kill() reports it
        entry.processes = deps.newProcesses(entry);
        await deps.attachAgent(entry);
        log.info({ sandbox: id, err: String(err) }, 'fork: the source cannot be saved, forking its files');
        return false;
      }
      // Beside the copies: the source's runtime state goes, its mount and namespace stay for boot().
      const settled = deps.settleCheckpointed(entry);
      try {
        await copyLayer(upper, join(dir, 'upper'), {
          fromBase: uidBase(record.slot),
          toBase: uidBase(record.slot),
          count: UID_COUNT,
        });
        // Hard links: a restore only reads the image, and boot() removes the source's names.
        await run('cp', ['-a', '--link', image, join(dir, 'image')], { timeoutMs: 60_000 });
      } finally {
        await settled.catch(() => {}); // boot() releases whatever this did not
        await deps.boot(entry, 'memory');
      }
      log.info({ sandbox: id, ms: Date.now() - started }, 'fork: source saved and restored');
      return true;
    });
    if (!saved) return undefined;
    const template = await deps.templates.getBuild(entry.record.templateName, entry.record.templateHash);
    const seed: Seed = {
      template,
      seed: { upper: join(dir, 'upper'), uidBase: uidBase(entry.record.slot) },
      restore: {
        image: join(dir, 'image'),
        agentToken: entry.record.agentToken,
        runtime: entry.record.runtime,
      },
    };
    const settled = await Promise.allSettled(
      Array.from({ length: input.count }, () => deps.createFrom(seed, create)),
    );
    log.info({ sandbox: id, count: input.count, ms: Date.now() - started }, 'fork with memory done');
    return forkResults(settled);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
