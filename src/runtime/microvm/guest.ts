import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import {
  appendFile,
  copyFile,
  mkdir,
  readFile,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';

const ROOT = join(import.meta.dirname, '..', '..', '..');
export const GUEST_SCRIPT = join(ROOT, 'scripts', 'microvm-guest.sh');
export const GUEST_INIT = join(import.meta.dirname, 'guest', 'init');

/**
 * Where scripts/microvm-guest.sh put the kernel and initramfs of this checkout's recipe: the
 * same key (sha256 of the script and the init script, 16 hex digits) as the script computes.
 */
export function guestDir(cacheDir: string): string {
  const key = createHash('sha256')
    .update(readFileSync(GUEST_SCRIPT))
    .update(readFileSync(GUEST_INIT))
    .digest('hex')
    .slice(0, 16);
  return join(cacheDir, 'guest', key);
}

/**
 * The initramfs every VM of this server boots: the cached one with the agent binary appended
 * as a second cpio archive (the kernel unpacks concatenated archives in order), so a rebuilt
 * agent needs no new guest build.
 */
export async function initrdWithAgent(guest: string, agentBinary: string, out: string): Promise<void> {
  const base = join(guest, 'initrd.gz');
  if (!existsSync(base) || !existsSync(join(guest, 'vmlinuz')))
    throw new CoveError(
      'unavailable',
      `the microVM guest kernel is not built (${guest}): run scripts/setup.sh (or scripts/microvm-guest.sh)`,
    );
  const tmp = `${out}.tmp`;
  await copyFile(base, tmp);
  // An uncompressed archive must start 4-byte aligned in the file; zeros between are skipped.
  const { size } = await stat(tmp);
  const agent = newcArchive([{ name: 'cove-agent', mode: 0o100755, data: await readFile(agentBinary) }]);
  await appendFile(tmp, Buffer.concat([Buffer.alloc((4 - (size % 4)) % 4), agent]));
  await rename(tmp, out);
}

/** A cpio "newc" archive of regular files (what the kernel's initramfs unpacker reads). */
export function newcArchive(files: Array<{ name: string; mode: number; data: Buffer }>): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const entry = (name: string, mode: number, data: Buffer, ino: number) => {
    const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const header = `070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`;
    const head = Buffer.from(`${header}${name}\0`, 'latin1');
    parts.push(head, pad(head.length), data, pad(data.length));
  };
  files.forEach((f, i) => entry(f.name, f.mode, f.data, i + 1));
  entry('TRAILER!!!', 0, Buffer.alloc(0), 0);
  return Buffer.concat(parts);
}

const building = new Map<string, Promise<string>>();

/**
 * The template's files as an ext4 image, built once per template build (its rootfs path is
 * immutable: a rebuild is a new directory) and shared read-only by every VM of the template
 * as the backing file of their own qcow2 layers. ~2 s for the 320 MB base template.
 */
export function templateImage(cacheDir: string, templateRootfs: string): Promise<string> {
  const started = (async () => {
    const real = await realpath(templateRootfs);
    const key = createHash('sha256').update(real).digest('hex').slice(0, 16);
    const image = join(cacheDir, 'images', `${key}.ext4`);
    if (existsSync(image)) return image;
    const pending = building.get(image);
    if (pending) return pending;
    const build = buildImage(real, image).finally(() => building.delete(image));
    building.set(image, build);
    return build;
  })();
  return started;
}

async function buildImage(rootfs: string, image: string): Promise<string> {
  await mkdir(join(image, '..'), { recursive: true, mode: 0o700 });
  const tmp = `${image}.${process.pid}.tmp`;
  try {
    const { stdout } = await run('du', ['-s', '--block-size=1M', '--one-file-system', rootfs]);
    const used = Number(stdout.split('\t')[0]);
    // Sparse: the room a sandbox may write into costs nothing until it is written.
    const sizeMiB = Math.ceil(used * 1.3) + 2048;
    await writeFile(tmp, '');
    await run('truncate', ['-s', `${sizeMiB}M`, tmp]);
    await run('mkfs.ext4', ['-q', '-F', '-d', rootfs, '-L', 'cove-root', '-E', 'root_owner=0:0', tmp], {
      timeoutMs: 600_000,
    });
    // Which template build it is made of: removed with it (template-vm.ts, collect).
    await writeFile(`${image}.rootfs`, rootfs);
    await rename(tmp, image);
    return image;
  } catch (err) {
    await rm(tmp, { force: true });
    throw new CoveError('internal', `building the microVM image of ${rootfs} failed: ${String(err)}`, {
      cause: err,
    });
  }
}
