import { chmod, lchown, lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../core/exec.ts';

/**
 * A sandbox's writable layer (its overlay's upper dir) copied elsewhere: for a snapshot, a
 * fork, or a new sandbox from a snapshot. `cp -a` keeps modes, times, xattrs (overlayfs
 * opaque-dir marks) and device nodes (its whiteouts), and shares blocks where the filesystem
 * can (reflink). Files are owned by host uids of the source's range (`fromBase` + the
 * sandbox's uid); when the copy is for another slot, owners move to `toBase` + the same uid.
 */
export async function copyLayer(
  from: string,
  to: string,
  ids: { fromBase: number; toBase: number; count: number },
): Promise<void> {
  await run('cp', ['-a', '--reflink=auto', '--no-target-directory', from, to], { timeoutMs: 600_000 });
  if (ids.fromBase !== ids.toBase) await shiftOwners(to, ids);
}

/**
 * Moves every owner (and group) in [fromBase, fromBase + count) to the same offset from
 * toBase, never following links. chown clears set-uid and set-gid bits, which are put back.
 * The kernel also drops file capabilities (security.capability) on chown: a file the sandbox
 * gave capabilities loses them in a copy for another slot (docs/e2b-compatibility.md).
 */
async function shiftOwners(
  dir: string,
  { fromBase, toBase, count }: { fromBase: number; toBase: number; count: number },
): Promise<void> {
  const shift = (id: number) => (id >= fromBase && id < fromBase + count ? id - fromBase + toBase : id);
  const pending = [dir];
  const fix = async (path: string) => {
    const st = await lstat(path);
    await lchown(path, shift(st.uid), shift(st.gid));
    if (!st.isSymbolicLink() && (st.mode & 0o6000) !== 0) await chmod(path, st.mode & 0o7777);
  };
  await fix(dir);
  while (pending.length > 0) {
    const current = pending.pop()!;
    for (const entry of await readdir(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      await fix(path);
      if (entry.isDirectory()) pending.push(path);
    }
  }
}

/** Bytes a directory takes on disk (allocated blocks, hard links once), as `du` counts them. */
export async function layerBytes(dir: string): Promise<number> {
  const { stdout } = await run('du', ['-s', '--block-size=1', dir], { timeoutMs: 120_000 }).catch(() => ({
    stdout: '0',
  }));
  return Number(stdout.split(/\s/)[0]) || 0;
}
