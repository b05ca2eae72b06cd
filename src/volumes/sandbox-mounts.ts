import { mkdir, readdir, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { run } from '../core/exec.ts';

/** A host directory the runtime bind-mounts at `destination` in the sandbox. */
export interface BindMount {
  source: string;
  destination: string;
}

/** Where a sandbox's volume mounts sit on the host: beside its rootfs, out of its reach. */
export const volumesDir = (sandboxDir: string) => join(sandboxDir, 'volumes');

/**
 * Gives each volume an idmapped mount under `<sandbox dir>/volumes/<n>` (cove-mount `volume`:
 * the volume's uids 0..count-1 become the sandbox's range from `uidBase`), to be bound into
 * the sandbox by the runtime. The caller registers `unmountVolumes` as the undo first: it
 * removes whatever part of this was done.
 */
export async function mountVolumes(
  helper: string,
  sandboxDir: string,
  volumes: ReadonlyArray<{ source: string; destination: string }>,
  uidBase: number,
  uidCount: number,
): Promise<BindMount[]> {
  if (volumes.length === 0) return [];
  const dir = volumesDir(sandboxDir);
  await mkdir(dir, { mode: 0o711, recursive: true }); // searchable: the runtime opens the mounts as the sandbox's root
  const binds: BindMount[] = [];
  for (const [n, v] of volumes.entries()) {
    const at = join(dir, String(n));
    await mkdir(at, { mode: 0o700 });
    await run(helper, ['volume', v.source, at, String(uidBase), String(uidCount)]);
    binds.push({ source: at, destination: v.destination });
  }
  return binds;
}

/**
 * Detaches a sandbox's volume mounts and removes their directories, never recursively: an
 * rmdir fails on a directory that still holds a volume's files, so nothing of a volume can be
 * deleted here. Succeeds when there is nothing to do (idempotent: undo, kill and reclaim).
 */
export async function unmountVolumes(helper: string, sandboxDir: string): Promise<void> {
  const dir = volumesDir(sandboxDir);
  const entries = await readdir(dir).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (entries === undefined) return;
  for (const name of entries) {
    await run(helper, ['unmount', join(dir, name)]);
    await rmdir(join(dir, name));
  }
  await rmdir(dir);
}

/**
 * Mount points at or below `dir` in Cove's mount namespace (/proc/self/mountinfo). Checked
 * before a sandbox's directory is removed recursively: a removal through a mount would delete
 * what is mounted (a volume's files).
 */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return text
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
}

/** Throws when anything is still mounted at or below `dir` (see mountsUnder). */
export async function refuseIfMounted(dir: string): Promise<void> {
  const left = await mountsUnder(dir);
  if (left.length > 0)
    throw new CoveError('internal', `${dir} is not removed: ${left.join(', ')} still mounted there`);
}
