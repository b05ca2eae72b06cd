import { mkdir, rm, stat, statfs, truncate, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { run } from '../core/exec.ts';

/**
 * A volume's filesystem: an ext4 image file (sparse: it takes the disk its files take), loop-
 * mounted at the volume's data directory while Cove runs. Its size is the volume's quota, for
 * the content API and for every sandbox that mounts it alike: the kernel refuses a write past
 * it (ENOSPC) wherever it comes from. One filesystem per volume also means a sandbox that
 * mounts it can reach nothing else of the host's disk, whatever it does with `..` or renames.
 */

/** Host mount options: nothing on a volume is a device or setuid for the host, or run by it. */
const HOST_OPTIONS = 'loop,nodev,nosuid,noexec,discard';

/**
 * Makes `file`, an ext4 image whose free space is at least `bytes` (ext4's journal, inode tables
 * and reserve are added: they grow with the size, so a second pass may be needed),
 * with its root directory owned by uid/gid 1000, the default user of E2B's templates (root
 * writes anywhere anyway), and no lost+found (a volume starts empty). Mounted at `at` after.
 */
export async function makeImage(file: string, at: string, bytes: number): Promise<void> {
  // ext4 keeps ~6.5% of a 1 GiB image for itself (more, proportionally, of a small one): a
  // first guess that makes the default size in one pass; later passes scale by what was missing.
  let size = Math.ceil(bytes / 0.93);
  for (let pass = 0; pass < 4; pass++) {
    await writeFile(file, '', { mode: 0o600 });
    await truncate(file, roundUp(size, 4096));
    // -m 0: no blocks reserved for root; lazy_journal_init: a fresh sparse file already reads as
    // zeros, so the journal need not be written (a 1 GiB image then takes 0.6 MB, not 33 MB).
    await run('mkfs.ext4', [
      '-q',
      '-F',
      '-m',
      '0',
      '-E',
      'root_owner=1000:1000,lazy_journal_init=1,nodiscard',
      file,
    ]);
    await mountImage(file, at);
    const free = await freeBytes(at);
    if (free >= bytes) {
      await rm(`${at}/lost+found`, { recursive: true, force: true });
      return;
    }
    await unmountImage(at);
    size = Math.ceil((size * bytes) / Math.max(free, 1)) + 64 * 1024;
  }
  throw new CoveError('internal', `could not size the volume image ${file} to ${bytes} bytes`);
}

/** Bytes that files may still take in the filesystem mounted at `at`. */
export async function freeBytes(at: string): Promise<number> {
  const st = await statfs(at);
  return st.bavail * st.bsize;
}

/** True when `path` is the root of a mount (its device differs from its parent's). */
export async function isMountPoint(path: string): Promise<boolean> {
  const [self, parent] = await Promise.all([
    stat(path).catch(() => undefined),
    stat(dirname(path)).catch(() => undefined),
  ]);
  return self !== undefined && parent !== undefined && self.dev !== parent.dev;
}

/**
 * Mounts the image at `at` (made when missing); nothing when something is mounted there already.
 * util-linux reuses the loop device a running sandbox still holds for the same file, so the
 * filesystem is never opened twice.
 */
export async function mountImage(file: string, at: string): Promise<void> {
  await mkdir(at, { recursive: true, mode: 0o755 });
  if (await isMountPoint(at)) return;
  await run('mount', ['-t', 'ext4', '-o', HOST_OPTIONS, file, at]);
}

/** Detaches what is mounted at `at` (lazily: an open content-API stream ends first); nothing when none is. */
export async function unmountImage(at: string): Promise<void> {
  if (await isMountPoint(at)) await run('umount', ['--lazy', at]);
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}
