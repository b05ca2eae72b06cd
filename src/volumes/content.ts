import { randomBytes } from 'node:crypto';
import { constants, createReadStream, type Stats } from 'node:fs';
import { chmod, chown, lchown, lstat, mkdir, open, readdir, readlink, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError, codeForErrno } from '../core/errors.ts';
import { freeBytes } from './image.ts';

/**
 * The volume-content API's file operations (spec 2.16, E2B's openapi-volumecontent.yml) on one
 * volume's data directory. Paths are the volume's own ("/a/b" or "a/b"): ".." is refused, and
 * so is a path that goes through a symlink (a symlink in a volume is a sandbox's to follow,
 * never Cove's: it could point anywhere on the host). uid and gid are the sandbox's own
 * (0..65535), the ids files keep on disk.
 */
export interface EntryStat {
  name: string;
  type: 'file' | 'directory' | 'symlink' | 'unknown';
  path: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  atime: string;
  mtime: string;
  ctime: string;
  target?: string;
}

export interface Owner {
  uid?: number;
  gid?: number;
  mode?: number;
}

const MAX_DEPTH = 32;
/** How much of an upload past the volume's room is read and dropped before the refusal. */
const DRAIN_BYTES = 64 * 2 ** 20;
const MAX_ENTRIES = 10_000;

/** A volume path split into its parts; "/" is no parts. */
export function parts(path: string | undefined): string[] {
  if (path === undefined || path.includes('\0'))
    throw new CoveError('invalid_argument', 'path: a path in the volume is required');
  const out = path.split('/').filter((p) => p !== '' && p !== '.');
  if (out.includes('..'))
    throw new CoveError('invalid_argument', `path ${path}: ".." may not leave the volume`);
  return out;
}

const show = (p: string[]) => `/${p.join('/')}`;

function fsError(err: unknown, path: string[]): never {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === undefined) throw err;
  const cove = codeForErrno(code);
  if (cove === 'internal') throw err;
  const what = cove === 'not_found' ? 'not found' : cove === 'already_exists' ? 'already exists' : code;
  throw new CoveError(cove, `path ${show(path)}: ${what}`, { cause: err });
}

export class VolumeContent {
  readonly root: string;
  readonly sizeLimit: number;

  constructor(root: string, sizeLimit: number) {
    this.root = root;
    this.sizeLimit = sizeLimit;
  }

  /** The host path of `p`, after checking no existing parent on the way is a symlink. */
  async #resolve(p: string[]): Promise<string> {
    let at = this.root;
    for (const part of p.slice(0, -1)) {
      at = join(at, part);
      const st = await lstat(at).catch(() => undefined);
      if (st === undefined) break; // missing: the operation reports it
      if (st.isSymbolicLink())
        throw new CoveError('invalid_argument', `path ${show(p)}: goes through a symlink`);
      if (!st.isDirectory())
        throw new CoveError('invalid_argument', `path ${show(p)}: not a directory on the way`);
    }
    return join(this.root, ...p);
  }

  async #stat(p: string[], host: string, st?: Stats): Promise<EntryStat> {
    const s = st ?? (await lstat(host).catch((err: unknown) => fsError(err, p)));
    const type = s.isFile()
      ? 'file'
      : s.isDirectory()
        ? 'directory'
        : s.isSymbolicLink()
          ? 'symlink'
          : 'unknown';
    return {
      name: p.at(-1) ?? '',
      type,
      path: show(p),
      size: s.size,
      mode: s.mode & 0o7777,
      uid: s.uid,
      gid: s.gid,
      atime: s.atime.toISOString(),
      mtime: s.mtime.toISOString(),
      ctime: s.ctime.toISOString(),
      ...(type === 'symlink' && { target: await readlink(host) }),
    };
  }

  async stat(path: string): Promise<EntryStat> {
    const p = parts(path);
    return this.#stat(p, await this.#resolve(p));
  }

  async list(path: string, depth = 1): Promise<EntryStat[]> {
    if (!Number.isInteger(depth) || depth < 1 || depth > MAX_DEPTH)
      throw new CoveError('invalid_argument', `depth: a whole number from 1 to ${MAX_DEPTH}`);
    const p = parts(path);
    const host = await this.#resolve(p);
    const st = await lstat(host).catch((err: unknown) => fsError(err, p));
    if (!st.isDirectory()) throw new CoveError('not_found', `path ${show(p)}: not a directory`);
    const out: EntryStat[] = [];
    const walk = async (dir: string[], hostDir: string, left: number): Promise<void> => {
      for (const name of (await readdir(hostDir)).sort()) {
        if (out.length >= MAX_ENTRIES)
          throw new CoveError(
            'invalid_argument',
            `more than ${MAX_ENTRIES} entries: list with a smaller depth`,
          );
        const child = [...dir, name];
        const childHost = join(hostDir, name);
        const s = await lstat(childHost).catch(() => undefined);
        if (!s) continue; // removed meanwhile
        out.push(await this.#stat(child, childHost, s));
        if (left > 1 && s.isDirectory()) await walk(child, childHost, left - 1);
      }
    };
    await walk(p, host, depth);
    return out;
  }

  async makeDir(path: string, opts: Owner & { force?: boolean }): Promise<EntryStat> {
    const p = parts(path);
    if (p.length === 0) throw new CoveError('already_exists', 'path /: already exists');
    const host = await this.#resolve(p);
    const existing = await lstat(host).catch(() => undefined);
    if (existing) {
      if (opts.force && existing.isDirectory()) return this.#stat(p, host, existing);
      throw new CoveError('already_exists', `path ${show(p)}: already exists`);
    }
    // force makes the missing parents too, with the same owner and mode (as E2B's mock does).
    for (let i = opts.force ? 1 : p.length; i <= p.length; i++) {
      const dir = join(this.root, ...p.slice(0, i));
      try {
        await mkdir(dir);
      } catch (err) {
        if (i < p.length && (err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        fsError(err, p.slice(0, i));
      }
      await this.#own(dir, opts, 0o755);
    }
    return this.#stat(p, host);
  }

  /** Writes `body` to `path` through a temporary file, refused past the volume's size limit. */
  async writeFile(
    path: string,
    body: AsyncIterable<Uint8Array> | null,
    opts: Owner & { force?: boolean },
  ): Promise<EntryStat> {
    const p = parts(path);
    if (p.length === 0) throw new CoveError('invalid_argument', 'path /: is a directory');
    const host = await this.#resolve(p);
    const parent = await lstat(join(this.root, ...p.slice(0, -1))).catch(() => undefined);
    if (!parent?.isDirectory()) throw new CoveError('not_found', `path ${show(p.slice(0, -1))}: not found`);
    const existing = await lstat(host).catch(() => undefined);
    if (existing && !existing.isFile())
      throw new CoveError('already_exists', `path ${show(p)}: is not a file`);
    if (existing && !opts.force) throw new CoveError('already_exists', `path ${show(p)}: already exists`);

    // The filesystem's free space is the room (image.ts): a replace is atomic, so the new copy
    // is written beside the old one and needs room of its own; ENOSPC is the last word.
    const room = await freeBytes(this.root);
    const temp = join(this.root, ...p.slice(0, -1), `.cove-upload-${randomBytes(6).toString('hex')}`);
    const file = await open(
      temp,
      constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
      0o600,
    ).catch((err: unknown) => this.#full(err));
    try {
      // Past the room the rest of the body is read and dropped (up to DRAIN_BYTES) before the
      // refusal: a request abandoned half-read closes its connection, and the client's next
      // request, already sent on it, would fail with a reset instead of working.
      let size = 0;
      let refused: Error | undefined;
      for await (const chunk of body ?? []) {
        size += chunk.byteLength;
        if (refused !== undefined) {
          if (size - room > DRAIN_BYTES) break;
          continue;
        }
        if (size > room) refused = this.#fullError();
        else await file.write(chunk).catch((err: unknown) => (refused = this.#fullError(err)));
      }
      if (refused !== undefined) throw refused;
      await file.close();
      await this.#own(temp, opts, 0o644);
      await rename(temp, host);
    } catch (err) {
      await file.close().catch(() => undefined);
      await rm(temp, { force: true });
      throw err;
    }
    return this.#stat(p, host);
  }

  /** An open stream of the file's bytes; a symlink or directory is no file here. */
  async readFile(path: string): Promise<{ stream: NodeJS.ReadableStream; size: number }> {
    const p = parts(path);
    const host = await this.#resolve(p);
    const file = await open(host, constants.O_RDONLY | constants.O_NOFOLLOW).catch((err: unknown) =>
      (err as NodeJS.ErrnoException).code === 'ELOOP'
        ? fsError(Object.assign(new Error(), { code: 'ENOENT' }), p)
        : fsError(err, p),
    );
    const st = await file.stat();
    if (!st.isFile()) {
      await file.close();
      throw new CoveError('not_found', `path ${show(p)}: not a file`);
    }
    return { stream: createReadStream('', { fd: file }), size: st.size };
  }

  async updateMetadata(path: string, meta: Owner): Promise<EntryStat> {
    const p = parts(path);
    const host = await this.#resolve(p);
    const st = await lstat(host).catch((err: unknown) => fsError(err, p));
    if (meta.uid !== undefined || meta.gid !== undefined)
      await lchown(host, meta.uid ?? st.uid, meta.gid ?? st.gid);
    if (meta.mode !== undefined && !st.isSymbolicLink()) await chmod(host, meta.mode);
    return this.#stat(p, host);
  }

  async remove(path: string): Promise<void> {
    const p = parts(path);
    if (p.length === 0) throw new CoveError('invalid_argument', 'path /: the volume root cannot be removed');
    const host = await this.#resolve(p);
    await lstat(host).catch((err: unknown) => fsError(err, p));
    await rm(host, { recursive: true, force: true });
  }

  /** The volume-is-full error for a write past the filesystem's room; any other error as it is. */
  #full(err?: unknown): never {
    throw this.#fullError(err);
  }

  #fullError(err?: unknown): Error {
    const cause = err as NodeJS.ErrnoException | undefined;
    if (cause !== undefined && cause.code !== 'ENOSPC' && cause.code !== 'EDQUOT') return cause;
    return new CoveError(
      'invalid_argument',
      `volume is full: its limit is ${Math.floor(this.sizeLimit / 2 ** 20)} MiB`,
      err === undefined ? undefined : { cause: err },
    );
  }

  async #own(host: string, opts: Owner, mode: number): Promise<void> {
    await chown(host, opts.uid ?? 0, opts.gid ?? 0);
    await chmod(host, opts.mode ?? mode);
  }
}
