import { chown, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { sandboxDir, uidBase, type HostDeps } from './host.ts';
import { layerBytes } from './layers.ts';
import type { Live } from './manager.ts';
import type { Storage } from './snapshot.ts';

/** Whether the sandbox's runtime saves it whole, memory and disk, while it runs (a microVM). */
export function savesWhole(host: HostDeps, entry: Live): boolean {
  return host.runtime.get(entry.record.runtime).snapshot !== undefined;
}

/**
 * Snapshots and forks of a VM (capability 'guest-kernel', driver.snapshot): its files are in
 * its own disk, not in an overlay's upper directory, so `dir` gets the VM's memory and a copy
 * of its disk layer in `dir/image`, taken at one instant while it stands still, and it goes on
 * (its processes and connections with it). A sandbox made from the image is restored with
 * them (provision's restoreFrom). `dir/upper` is an empty layer: the seed every create from a
 * snapshot copies (the VM's overlay mount holds only what Cove writes for it).
 * Admitted against the disk budget at the layer's size plus the VM's memory (the state's bound).
 */
export async function saveVmImage(
  deps: { host: HostDeps; storage: Storage },
  entry: Live,
  dir: string,
  what: string,
): Promise<number> {
  const { id, state, runtime, slot } = entry.record;
  if (entry.killing) throw new CoveError('not_found', `sandbox ${id} not found`);
  const driver = deps.host.runtime.get(runtime);
  if (!driver.snapshot) throw new CoveError('internal', `the ${runtime} backend cannot save a sandbox whole`);
  if (state !== 'running')
    throw new CoveError(
      'conflict',
      `${what}: on the ${runtime} backend a sandbox is saved while it runs (connect resumes a paused one)`,
    );
  const disk = await layerBytes(join(sandboxDir(deps.host, id), 'disk.qcow2'));
  await deps.storage.admit(disk + entry.record.limits.memoryMiB * 2 ** 20, what);
  await mkdir(join(dir, 'image'), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, 'upper'), { mode: 0o755 });
  await chown(join(dir, 'upper'), uidBase(slot), uidBase(slot));
  await driver.snapshot(id, join(dir, 'image'));
  return layerBytes(dir);
}
