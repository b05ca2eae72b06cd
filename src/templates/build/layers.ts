import { spawn } from 'node:child_process';
import {
  chmod,
  chown,
  lchown,
  lstat,
  mkdir,
  readFile,
  readdir,
  rename,
  rm,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import type { Layer } from './run-build.ts';

/** How many uids a sandbox's range spans (manager/host.ts UID_COUNT). */
const UID_COUNT = 65_536;

/**
 * The egress proxy's CA, which every sandbox of an instance trusts (manager/trust-store.ts):
 * its own file and its copy appended to the system bundle belong to the build sandbox's
 * instance, never to a template that other instances share.
 */
const EGRESS_CA = 'etc/ssl/certs/cove-egress-ca.pem';
const CA_BUNDLE = 'etc/ssl/certs/ca-certificates.crt';

/**
 * Paths of a build sandbox's upper layer that belong to that sandbox, not to the template:
 * the runtime's mount points and the per-sandbox /etc/hosts (host.ts writes it), the
 * builder's own staging folder, and the instance's egress CA.
 */
const SANDBOX_OWNED = new Set(['.cove', 'dev', 'proc', 'sys', 'etc/hosts', 'tmp/.cove-build', EGRESS_CA]);

/** The layer under `key`, or undefined while there is none (layers are published by a rename). */
export async function readLayer(layersDir: string, key: string): Promise<Layer | undefined> {
  try {
    return JSON.parse(await readFile(join(layersDir, key, 'layer.json'), 'utf8')) as Layer;
  } catch {
    return undefined;
  }
}

/** A regular file of the upper dir (never a link), or undefined. */
async function upperFile(upper: string, rel: string): Promise<string | undefined> {
  const path = join(upper, rel);
  const st = await lstat(path).catch(() => undefined);
  return st?.isFile() && st.size <= 1 << 20 ? readFile(path, 'utf8') : undefined;
}

const NOBODY = 65_534;

/**
 * A copy of `from` at `to` (which must not exist) that shares every file with it: directories
 * are new, files are hard links. Layers and templates are never written in place (a sandbox
 * writes to its own overlay upper dir), so sharing the inodes is safe, and a layer costs only
 * its directory tree plus the files its step changed.
 */
export function linkTree(from: string, to: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('cp', ['-a', '--link', '--no-target-directory', from, to], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new CoveError('internal', `cp --link ${from} ${to} failed: ${err}`)),
    );
  });
}

/**
 * Applies what one build step changed to `target` (a linkTree of the step's parent layer):
 * the overlay upper dir `upper` of the stopped build sandbox, whose merged view is still
 * mounted at `merged`. Deletions are read from the merged view (an entry of the parent that
 * the merged view no longer lists was removed by a whiteout or hidden by an opaque directory),
 * so no overlay xattr has to be read. Files move out of `upper` (same filesystem: a rename);
 * owners are shifted back from the sandbox's host range to the template's ids.
 *
 * The target's content came from untrusted steps: every path is walked one component at a time
 * with lstat, a non-directory where a directory is needed is replaced, never followed.
 */
export async function applyUpper(input: {
  upper: string;
  merged: string;
  target: string;
  uidBase: number;
  log: (line: string) => void;
}): Promise<void> {
  const shift = (id: number) =>
    id >= input.uidBase && id < input.uidBase + UID_COUNT ? id - input.uidBase : NOBODY;

  const applyDir = async (rel: string): Promise<void> => {
    const here = join(input.target, rel);
    const seen = new Set(await readdir(join(input.merged, rel)));
    for (const name of await readdir(here)) {
      const path = rel === '' ? name : `${rel}/${name}`;
      if (!seen.has(name) && !SANDBOX_OWNED.has(path))
        await rm(join(here, name), { recursive: true, force: true });
    }
    for (const entry of await readdir(join(input.upper, rel))) {
      const path = rel === '' ? entry : `${rel}/${entry}`;
      if (SANDBOX_OWNED.has(path)) continue;
      const from = join(input.upper, path);
      const to = join(input.target, path);
      const st = await lstat(from);
      const old = await lstat(to).catch(() => undefined);
      if (st.isCharacterDevice() && st.rdev === 0) {
        await rm(to, { recursive: true, force: true }); // a whiteout
      } else if (st.isDirectory()) {
        if (old && !old.isDirectory()) await rm(to, { force: true });
        if (!old?.isDirectory()) await mkdir(to);
        await applyDir(path);
        await chown(to, shift(st.uid), shift(st.gid));
        await chmod(to, st.mode & 0o7777);
        await utimes(to, st.atime, st.mtime);
      } else if (st.isFile() || st.isSymbolicLink()) {
        if (old) await rm(to, { recursive: true, force: true });
        await rename(from, to);
        await lchown(to, shift(st.uid), shift(st.gid));
        // chown clears setuid and setgid bits: the mode is set again after it.
        if (st.isFile()) await chmod(to, st.mode & 0o7777);
      } else {
        input.log(`skipped /${path}: a device, fifo or socket is not kept in a template`);
      }
    }
  };
  const ca = (await upperFile(input.upper, EGRESS_CA))?.trim();
  const bundleChanged = (await upperFile(input.upper, CA_BUNDLE)) !== undefined;
  await applyDir('');
  // The bundle came from the upper dir (its own inode, not a parent's hard link): drop the CA.
  if (ca && bundleChanged) {
    const bundle = join(input.target, CA_BUNDLE);
    const st = await lstat(bundle).catch(() => undefined);
    const text = st?.isFile() ? await readFile(bundle, 'utf8') : '';
    if (text.includes(ca)) await writeFile(bundle, text.replace(`${ca}\n`, '').replace(ca, ''));
  }
}
