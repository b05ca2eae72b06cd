import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { join } from 'node:path';
import { create } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createFileStore } from './files.ts';

const hash = (c: string) => c.repeat(64);
const body = (data: Buffer): AsyncIterable<Uint8Array> => Readable.from([data]);
const query = (q: string) =>
  Object.fromEntries(new URLSearchParams(q)) as { expires: string; signature: string };

describe('the COPY upload store', () => {
  let dir: string;
  let good: Buffer;
  let evil: Buffer;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cove-files-'));
    await mkdir(join(dir, 'ctx', 'app'), { recursive: true });
    await writeFile(join(dir, 'ctx', 'app', 'a.txt'), 'a');
    await create({ file: join(dir, 'good.tgz'), gzip: true, cwd: join(dir, 'ctx') }, ['app']);
    await create({ file: join(dir, 'evil.tgz'), gzip: true, cwd: join(dir, 'ctx'), prefix: '../..' }, [
      'app',
    ]);
    good = await readFile(join(dir, 'good.tgz'));
    evil = await readFile(join(dir, 'evil.tgz'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('stores an upload to a URL it signed; the hash is then present', async () => {
    const files = createFileStore({ dir: join(dir, 'a'), ttlMs: 60_000, maxBytes: 1 << 20 });
    expect(await files.present(hash('a'))).toBe(false);
    await files.put(hash('a'), query(await files.uploadQuery(hash('a'))), body(good), good.length);
    expect(await files.present(hash('a'))).toBe(true);
    expect(await files.archive(hash('a'))).toMatch(/a{64}\.tar$/);
  });

  it('refuses forged, foreign and expired URLs', async () => {
    const files = createFileStore({ dir: join(dir, 'b'), ttlMs: -1, maxBytes: 1 << 20 });
    const expired = query(await files.uploadQuery(hash('b')));
    await expect(files.put(hash('b'), expired, body(good), good.length)).rejects.toThrow(/expired/);
    const other = createFileStore({ dir: join(dir, 'c'), ttlMs: 60_000, maxBytes: 1 << 20 });
    const foreign = query(await other.uploadQuery(hash('b')));
    await expect(files.put(hash('b'), foreign, body(good), good.length)).rejects.toThrow(
      /not one Cove signed/,
    );
    const valid = query(await other.uploadQuery(hash('b')));
    await expect(other.put(hash('c'), valid, body(good), good.length)).rejects.toThrow(/not one Cove signed/);
  });

  it('refuses an upload over the limit, declared or streamed', async () => {
    const files = createFileStore({ dir: join(dir, 'd'), ttlMs: 60_000, maxBytes: 64 });
    const q = query(await files.uploadQuery(hash('d')));
    await expect(files.put(hash('d'), q, body(good), good.length)).rejects.toThrow(/larger than the limit/);
    await expect(files.put(hash('d'), q, body(good), undefined)).rejects.toThrow(/larger than the limit/);
    expect(await files.present(hash('d'))).toBe(false);
  });

  it('keeps a refused archive out and says why when a COPY asks for it', async () => {
    const files = createFileStore({ dir: join(dir, 'e'), ttlMs: 60_000, maxBytes: 1 << 20 });
    await files.put(hash('e'), query(await files.uploadQuery(hash('e'))), body(evil), evil.length);
    expect(await files.present(hash('e'))).toBe(false);
    await expect(files.archive(hash('e'))).rejects.toThrow(/leaves the destination/);
    await expect(files.archive(hash('f'))).rejects.toThrow(/never uploaded/);
  });
});
