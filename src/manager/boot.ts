import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { untilFile } from '../core/file-event.ts';
import {
  agentSocket,
  provision,
  restoreInPlace,
  sandboxDir,
  stopKeepingDisk,
  type HostDeps,
} from './host.ts';
import type { Live } from './manager.ts';
import { applyNetwork } from './network.ts';
import type { PauseDeps } from './pause.ts';
import { startTemplateServer } from './startup.ts';

/** Where a checkpoint image of a paused sandbox's memory lives, beside its writable layer. */
export const imageDir = (host: HostDeps, id: string) => join(sandboxDir(host, id), 'image');

/** Closes a sandbox's agent channel on purpose (a pause, checkpoint or capture), not as a death. */
export function detachAgent(entry: Live): void {
  const agent = entry.agent;
  entry.agent = undefined; // first: its close must not look like the sandbox's death
  agent?.close();
}

export interface BootOptions {
  /** Takes work the caller need not wait for (pause.ts exclusive); awaited here without it. */
  later?: (tail: Promise<unknown>) => void;
  /** Told as each step ends (the resume's log line carries them). */
  mark?: (step: string) => void;
}

/** What pause.ts knows of a paused sandbox's host objects. */
export interface HostState {
  /** Known released but the directory (boot need not repeat it). */
  released: WeakSet<Live>;
  /** Root filesystem mount and network namespace kept for a restore in place. */
  inPlace: WeakSet<Live>;
}

/**
 * Starts a sandbox paused to disk again: restored from its image (into the mount and
 * namespace it was saved from when the pause kept them: no mount, no namespace, no `ip`, only
 * the restore), or cold from its files when there is none or the restore fails.
 */
export async function bootFromDisk(
  deps: PauseDeps,
  state: HostState,
  entry: Live,
  as: 'filesystem' | 'memory',
  { later, mark }: BootOptions,
): Promise<void> {
  const { host, log } = deps;
  const { record } = entry;
  const { id, slot, limits, agentToken } = record;
  const template = await deps.templates
    .getBuild(record.templateName, record.templateHash)
    .catch((err: unknown) => {
      throw new CoveError(
        'unavailable',
        `sandbox ${id} cannot resume: its template build ${record.templateName}/${record.templateHash} is gone`,
        { cause: err },
      );
    });
  const kept = state.inPlace.delete(entry) && as === 'memory';
  // Whatever a pause cut short left mounted or attached, or kept for a restore not made.
  if (!kept && !state.released.delete(entry)) await stopKeepingDisk(host, id, slot);
  // A namespace made again has no egress rules (detach cleared them): the record's policy
  // first, before anything of the sandbox runs. One kept in place kept its rules.
  if (!kept) await applyNetwork(host, record);
  mark?.(kept ? 'template' : 'release');
  const { runtime } = record;
  const volumes = record.volumeMounts ?? [];
  const base = {
    id,
    slot,
    templateRootfs: template.rootfs,
    limits,
    agentToken,
    runtime,
    volumes,
    existing: true,
  };
  let restored = false;
  if (as === 'memory') {
    const image = imageDir(host, id);
    try {
      if (kept) await restoreInPlace(host, base, image);
      else await provision(host, { ...base, restoreFrom: image });
      restored = true;
    } catch (err) {
      log.warn({ err, sandbox: id }, 'restore failed: booting from the filesystem');
      if (kept) await stopKeepingDisk(host, id, slot);
    }
    mark?.('restore');
    const removed = rm(image, { recursive: true, force: true });
    if (later) later(removed);
    else await removed;
  }
  if (!restored) await provision(host, base);
  entry.processes = deps.newProcesses(entry);
  try {
    // A restored agent binds its socket again within ms of the restore's return: the kernel
    // tells when (inotify), instead of connect's retries.
    if (restored) await untilFile(agentSocket(host, id), true, 5_000);
    await deps.attachAgent(entry, !restored);
    if (!restored && template.start) {
      const server = { ...template, start: template.start };
      await startTemplateServer(entry.agent!, server, record.envVars, deps.info(record).address);
    }
    mark?.('agent');
  } catch (err) {
    detachAgent(entry);
    await stopKeepingDisk(host, id, slot).catch(() => {});
    throw err;
  }
}
