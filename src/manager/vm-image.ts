import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { sandboxDir, uidBase, type HostDeps } from './host.ts';
import { layerBytes } from './layers.ts';
import type { Live } from './manager.ts';
import { imageDir } from './pause.ts';
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
 * them (provision's restoreFrom). A VM paused with its memory is saved from its pause's image
 * and disk, as they are. `dir/upper` is an empty layer: the seed every create from a
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
  // Paused with its memory: the pause's image and the disk layer are that instant already.
  const bundleDir = sandboxDir(deps.host, id);
  const pausedImage = imageDir(deps.host, id);
  const paused = state === 'paused' && existsSync(join(pausedImage, 'state'));
  if (state !== 'running' && !paused)
    throw new CoveError(
      'conflict',
      `${what}: on the ${runtime} backend a sandbox is saved with its memory (connect resumes one paused without)`,
    );
  const disk = await layerBytes(join(bundleDir, 'disk.qcow2'));
  const memory = paused ? await layerBytes(pausedImage) : entry.record.limits.memoryMiB * 2 ** 20;
  await deps.storage.admit(disk + memory, what);
  await mkdir(join(dir, 'image'), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, 'upper'), { mode: 0o755 });
  await chown(join(dir, 'upper'), uidBase(slot), uidBase(slot));
  await driver.snapshot(id, join(dir, 'image'), paused ? { image: pausedImage, bundleDir } : undefined);
  await writeFile(join(dir, 'image', RUNTIME_FILE), driver.name);
  return layerBytes(dir);
}

/** Names the backend an image was saved by: only that one can restore it. */
const RUNTIME_FILE = 'runtime';

/**
 * The backend that restores the image `image` (saveVmImage), whatever the server's default
 * or the template says now: the one it was saved by. Images saved before that was written
 * are of the one backend that saves whole. A backend this server does not have is refused:
 * a sandbox must never start without the memory and disk it was made of.
 */
export async function imageRuntime(host: HostDeps, image: string): Promise<string> {
  const whole = host.runtime.names.filter((n) => host.runtime.get(n).snapshot !== undefined);
  const runtime = await readFile(join(image, RUNTIME_FILE), 'utf8').catch(() =>
    whole.length === 1 ? whole[0]! : '',
  );
  if (!whole.includes(runtime))
    throw new CoveError(
      'unavailable',
      `the image ${image} was saved by the ${runtime || 'unknown'} backend, which this server cannot restore`,
    );
  return runtime;
}
