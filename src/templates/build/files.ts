import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, readdir, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';
import { CoveError } from '../../core/errors.ts';
import { checkUploadTar } from './tar-check.ts';

const HASH_RE = /^[0-9a-f]{64}$/;

/**
 * The COPY archives the SDK uploads (spec 2.15, step 2), keyed by the SDK's files hash:
 * `<dir>/<hash>.tar`. Upload URLs are Cove's own, signed with a key kept in `<dir>/.key` and
 * valid for `ttlMs`; the PUT carries no API key (the SDK sends none to a presigned URL), so the
 * signature is its only credential. An archive is checked once stored (tar-check.ts); one that
 * is refused is kept out, and the reason fails the COPY step that needs it.
 */
export function createFileStore(opts: { dir: string; ttlMs: number; maxBytes: number }) {
  let key: Buffer | undefined;
  const secret = async (): Promise<Buffer> => {
    if (key) return key;
    await mkdir(opts.dir, { recursive: true, mode: 0o700 });
    const path = join(opts.dir, '.key');
    try {
      key = await readFile(path);
    } catch {
      await writeFile(path, randomBytes(32), { mode: 0o600, flag: 'wx' }).catch(() => {});
      key = await readFile(path);
    }
    return key;
  };
  const sign = async (hash: string, expires: number) =>
    createHmac('sha256', await secret())
      .update(`${hash}\n${expires}`)
      .digest('hex');

  const checkHash = (hash: string) => {
    if (!HASH_RE.test(hash))
      throw new CoveError('invalid_argument', `files hash ${hash}: want 64 hex digits`);
  };
  const path = (hash: string) => join(opts.dir, `${hash}.tar`);
  const refusedPath = (hash: string) => join(opts.dir, `${hash}.refused`);

  const present = async (hash: string): Promise<boolean> => {
    checkHash(hash);
    return stat(path(hash)).then(
      () => true,
      () => false,
    );
  };

  return {
    maxBytes: opts.maxBytes,
    present,

    /** The query string of a signed upload URL for `hash`. */
    async uploadQuery(hash: string): Promise<string> {
      checkHash(hash);
      const expires = Date.now() + opts.ttlMs;
      return `expires=${expires}&signature=${await sign(hash, expires)}`;
    },

    /** Stores an upload after checking its signature, its size and its content. */
    async put(
      hash: string,
      q: { expires?: string; signature?: string },
      body: AsyncIterable<Uint8Array>,
      declaredLength: number | undefined,
    ): Promise<void> {
      checkHash(hash);
      const expires = Number(q.expires);
      const want = Buffer.from(await sign(hash, expires));
      const got = Buffer.from(q.signature ?? '');
      if (!Number.isFinite(expires) || got.length !== want.length || !timingSafeEqual(got, want))
        throw new CoveError('permission_denied', 'the upload URL is not one Cove signed');
      if (Date.now() > expires) throw new CoveError('permission_denied', 'the upload URL has expired');
      const tooLarge = () =>
        new CoveError('invalid_argument', `the upload is larger than the limit of ${opts.maxBytes} bytes`);
      if (declaredLength !== undefined && declaredLength > opts.maxBytes) throw tooLarge();
      const tmp = join(opts.dir, `.upload-${randomBytes(6).toString('hex')}`);
      let size = 0;
      try {
        const limit = new Transform({
          transform(chunk: Buffer, _enc, cb) {
            size += chunk.length;
            cb(size > opts.maxBytes ? tooLarge() : null, chunk);
          },
        });
        await pipeline(body, limit, createWriteStream(tmp, { mode: 0o600 }));
        await rm(refusedPath(hash), { force: true });
        try {
          await checkUploadTar(tmp);
        } catch (err) {
          await writeFile(refusedPath(hash), err instanceof Error ? err.message : String(err));
          return;
        }
        await rename(tmp, path(hash));
      } finally {
        await rm(tmp, { force: true });
      }
    },

    /** Removes archives no build has read or stored for `ttlMs` (the SDK uploads again when asked). */
    async collect(ttlMs: number): Promise<void> {
      for (const f of await readdir(opts.dir).catch(() => [] as string[])) {
        if (!/^[0-9a-f]{64}\.(tar|refused)$/.test(f) && !f.startsWith('.upload-')) continue;
        const st = await stat(join(opts.dir, f)).catch(() => undefined);
        if (st && Date.now() - Math.max(st.mtimeMs, st.atimeMs) > ttlMs)
          await rm(join(opts.dir, f), { force: true });
      }
    },

    /** The stored archive of `hash`, or a clear error when it never came or was refused. */
    async archive(hash: string): Promise<string> {
      checkHash(hash);
      if (await present(hash)) {
        const now = new Date();
        await utimes(path(hash), now, now).catch(() => {}); // collect()'s clock
        return path(hash);
      }
      const refused = await readFile(refusedPath(hash), 'utf8').catch(() => undefined);
      throw new CoveError('invalid_argument', refused ?? `the files ${hash} were never uploaded`);
    },
  };
}

export type FileStore = ReturnType<typeof createFileStore>;
