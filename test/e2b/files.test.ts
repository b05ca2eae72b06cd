import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type Sandbox = InstanceType<E2b['Sandbox']>;

/** The key the server accepts: the one it minted when it has that notion, else any. */
const apiKeyOf = (cove: Cove): string =>
  'apiKey' in cove && typeof cove.apiKey === 'string' ? cove.apiKey : 'e2b_test';

async function drain(stream: ReadableStream<Uint8Array>): Promise<Buffer> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/**
 * envd's filesystem service and /files through the unmodified `e2b` SDK (spec 3.3-3.5, 4.4):
 * what `sandbox.files` does against Cove. The sandbox is `secure`, so every call carries the
 * access token.
 */
describe.skipIf(!canRunSandboxes)('e2b files', () => {
  let cove: Cove & { config: Config };
  let e2b: E2b;
  let sbx: Sandbox;

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = apiKeyOf(cove);
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base', { secure: true });
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('writes and reads text, bytes, blob and stream', async () => {
    const info = await sbx.files.write('rw/hello.txt', 'Hello, world!');
    expect(info).toEqual({ name: 'hello.txt', path: '/home/user/rw/hello.txt', type: 'file' });
    expect(await sbx.files.read('rw/hello.txt')).toBe('Hello, world!');
    const bytes = await sbx.files.read('rw/hello.txt', { format: 'bytes' });
    expect(bytes).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(bytes).toString()).toBe('Hello, world!');
    const blob = await sbx.files.read('/home/user/rw/hello.txt', { format: 'blob' });
    expect(await blob.text()).toBe('Hello, world!');
    const stream = await sbx.files.read('~/rw/hello.txt', { format: 'stream' });
    expect((await drain(stream)).toString()).toBe('Hello, world!');
    // Every byte value survives, in both directions.
    const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    await sbx.files.write('rw/all.bin', all.buffer.slice(all.byteOffset, all.byteOffset + all.length));
    expect(Buffer.from(await sbx.files.read('rw/all.bin', { format: 'bytes' }))).toEqual(all);
  });

  it('writes every data type, overwrites, and reads an empty file in every format', async () => {
    const enc = new TextEncoder();
    const infos = await sbx.files.write([
      { path: 'types/text.txt', data: 'text' },
      { path: 'types/buffer.txt', data: enc.encode('array buffer').buffer },
      { path: 'types/blob.txt', data: new Blob(['blob']) },
      { path: 'types/stream.txt', data: new Blob(['stream '.repeat(10_000)]).stream() },
    ]);
    expect(infos.map((i) => i.name)).toEqual(['text.txt', 'buffer.txt', 'blob.txt', 'stream.txt']);
    expect(await sbx.files.read('types/buffer.txt')).toBe('array buffer');
    expect(await sbx.files.read('types/blob.txt')).toBe('blob');
    expect(await sbx.files.read('types/stream.txt')).toBe('stream '.repeat(10_000));
    await sbx.files.write('types/text.txt', 'shorter');
    expect(await sbx.files.read('types/text.txt')).toBe('shorter');

    await sbx.files.write('types/empty', '');
    expect(await sbx.files.read('types/empty')).toBe('');
    expect(await sbx.files.read('types/empty', { format: 'bytes' })).toEqual(new Uint8Array(0));
    expect((await sbx.files.read('types/empty', { format: 'blob' })).size).toBe(0);
    expect((await drain(await sbx.files.read('types/empty', { format: 'stream' }))).length).toBe(0);
  });

  it('writes several files in one request, anywhere, as the user', async () => {
    expect(await sbx.files.write([])).toEqual([]);
    const files = [
      { path: '/0/multi.txt', data: 'zero' },
      { path: '/home/user/multi1.txt', data: 'one' },
      { path: 'nested/a/b/multi2.txt', data: 'two' },
    ];
    const infos = await sbx.files.writeFiles(files);
    expect(infos.map((i) => i.path)).toEqual([
      '/0/multi.txt',
      '/home/user/multi1.txt',
      '/home/user/nested/a/b/multi2.txt',
    ]);
    for (const [i, f] of files.entries()) expect(await sbx.files.read(infos[i]!.path)).toBe(f.data);
    // envd's reach with the user's ownership: a new top-level directory belongs to the user.
    expect(await sbx.files.getInfo('/0')).toMatchObject({ type: 'dir', owner: 'user', mode: 0o755 });
    const root = await sbx.files.write('/root/mine.txt', 'r', { user: 'root' });
    expect(root.path).toBe('/root/mine.txt');
    expect(await sbx.files.getInfo('mine.txt', { user: 'root' })).toMatchObject({
      owner: 'root',
      group: 'root',
    });
  });

  it('tells whether files exist and describes files, directories and symlinks', async () => {
    await sbx.files.write('info/file.txt', 'test');
    expect(await sbx.files.exists('info/file.txt')).toBe(true);
    expect(await sbx.files.exists('info/missing.txt')).toBe(false);
    const file = await sbx.files.getInfo('info/file.txt');
    expect(file).toMatchObject({
      name: 'file.txt',
      type: 'file',
      path: '/home/user/info/file.txt',
      size: 4,
      mode: 0o644,
      permissions: '-rw-r--r--',
      owner: 'user',
      group: 'user',
    });
    expect(file.symlinkTarget).toBeUndefined();
    expect(file.metadata).toBeUndefined();
    expect(Math.abs(file.modifiedTime!.getTime() - Date.now())).toBeLessThan(60_000);
    const dir = await sbx.files.getInfo('info');
    expect(dir).toMatchObject({ type: 'dir', mode: 0o755, permissions: 'drwxr-xr-x', owner: 'user' });
    expect(dir.size).toBeGreaterThan(0);
    await sbx.commands.run(
      'cd ~/info && ln -s file.txt link && ln -s /tmp tmplink && ln -s nowhere dangling',
    );
    const link = await sbx.files.getInfo('info/link');
    expect(link).toMatchObject({
      name: 'link',
      type: 'file',
      mode: 0o644,
      symlinkTarget: '/home/user/info/file.txt',
    });
    expect(link.permissions).toBe('Lrwxrwxrwx');
    expect(await sbx.files.getInfo('info/tmplink')).toMatchObject({ type: 'dir', symlinkTarget: '/tmp' });
    expect((await sbx.files.getInfo('info/dangling')).symlinkTarget).toBe('/home/user/info/nowhere');
    await expect(sbx.files.getInfo('info/missing.txt')).rejects.toBeInstanceOf(e2b.FileNotFoundError);
  });

  it('lists in lexical depth-first order to the depth asked, following a symlinked path', async () => {
    for (const d of ['s1/s1_1', 's1/s1_2', 's2/s2_1']) await sbx.files.makeDir(`tree/${d}`);
    await sbx.files.write('tree/file1.txt', 'x');
    await sbx.files.write('tree/s1/s1_1/deep.txt', 'x');
    const names = async (depth?: number) =>
      (await sbx.files.list('tree', depth === undefined ? undefined : { depth })).map((e) =>
        e.path.slice(16),
      );
    expect(await names()).toEqual(['file1.txt', 's1', 's2']);
    expect(await names(2)).toEqual(['file1.txt', 's1', 's1/s1_1', 's1/s1_2', 's2', 's2/s2_1']);
    expect(await names(3)).toEqual([
      'file1.txt',
      's1',
      's1/s1_1',
      's1/s1_1/deep.txt',
      's1/s1_2',
      's2',
      's2/s2_1',
    ]);
    const [file] = await sbx.files.list('tree');
    expect(file).toMatchObject({ name: 'file1.txt', type: 'file', mode: 0o644, owner: 'user', size: 1 });
    await sbx.commands.run('ln -s ~/tree ~/tree-link');
    expect((await sbx.files.list('tree-link')).map((e) => e.path)).toEqual([
      '/home/user/tree-link/file1.txt',
      '/home/user/tree-link/s1',
      '/home/user/tree-link/s2',
    ]);
    await expect(sbx.files.list('tree', { depth: 0 })).rejects.toThrow('depth should be at least one');
    await expect(sbx.files.list('no-such-dir')).rejects.toBeInstanceOf(e2b.FileNotFoundError);
    await expect(sbx.files.list('tree/file1.txt')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
  });

  it('makes directories, renames and removes', async () => {
    expect(await sbx.files.makeDir('mk/a/b')).toBe(true);
    expect(await sbx.files.makeDir('mk/a/b')).toBe(false);
    expect(await sbx.files.getInfo('mk/a')).toMatchObject({ owner: 'user', mode: 0o755 });
    await sbx.files.write('mk/file', 'f');
    await expect(sbx.files.makeDir('mk/file')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);

    await sbx.files.write('mv/old.txt', 'moved');
    const moved = await sbx.files.rename('mv/old.txt', 'mv/new/place/new.txt');
    expect(moved).toMatchObject({ name: 'new.txt', type: 'file', path: '/home/user/mv/new/place/new.txt' });
    expect(await sbx.files.exists('mv/old.txt')).toBe(false);
    expect(await sbx.files.read('mv/new/place/new.txt')).toBe('moved');
    await expect(sbx.files.rename('mv/missing', 'mv/x')).rejects.toBeInstanceOf(e2b.FileNotFoundError);

    await sbx.files.remove('mv');
    expect(await sbx.files.exists('mv')).toBe(false);
    await sbx.files.remove('mv'); // already gone: not an error
    await sbx.commands.run('mkdir -p ~/rmlink && ln -s ~/mk ~/rmlink/to-mk');
    await sbx.files.remove('rmlink');
    expect(await sbx.files.exists('mk/a/b')).toBe(true); // the link went, not what it pointed to
  });

  it('keeps, replaces and clears metadata; rejects bad metadata before writing', async () => {
    const meta = { author: 'mish', purpose: 'upload' };
    expect((await sbx.files.write('meta/a.txt', 'a', { metadata: meta })).metadata).toEqual(meta);
    expect((await sbx.files.getInfo('meta/a.txt')).metadata).toEqual(meta);
    const octet = await sbx.files.write('meta/b.txt', 'b', { metadata: { k: 'v' }, useOctetStream: true });
    expect(octet.metadata).toEqual({ k: 'v' });
    for (const info of await sbx.files.writeFiles(
      [
        { path: 'meta/c.txt', data: 'c' },
        { path: 'meta/d.txt', data: 'd' },
      ],
      { metadata: { source: 'suite' } },
    ))
      expect(info.metadata).toEqual({ source: 'suite' });
    expect((await sbx.files.list('meta')).find((e) => e.name === 'c.txt')?.metadata).toEqual({
      source: 'suite',
    });
    expect((await sbx.files.rename('meta/a.txt', 'meta/a2.txt')).metadata).toEqual(meta);
    expect((await sbx.files.write('meta/a2.txt', 'again')).metadata).toBeUndefined();
    expect((await sbx.files.getInfo('meta/a2.txt')).metadata).toBeUndefined();
    await sbx.commands.run(
      `python3 -c "import os; os.setxattr('/home/user/meta/b.txt', 'user.e2b.set', b'inside')"`,
    );
    expect((await sbx.files.getInfo('meta/b.txt')).metadata).toEqual({ k: 'v', set: 'inside' });
    await expect(sbx.files.write('meta/bad.txt', 'x', { metadata: { k: 'v\n' } })).rejects.toBeInstanceOf(
      e2b.InvalidArgumentError,
    );
    // Past the SDK's own checks, the server's bounds (4096 bytes in all) answer 400.
    const big = { a: 'x'.repeat(3000), b: 'y'.repeat(1100) };
    await expect(sbx.files.write('meta/big.txt', 'x', { metadata: big })).rejects.toBeInstanceOf(
      e2b.InvalidArgumentError,
    );
    expect(await sbx.files.exists('meta/big.txt')).toBe(false);
  });

  it('reads and writes gzip both ways', async () => {
    const text = 'gzip me '.repeat(5000);
    const info = await sbx.files.write('gz/a.txt', text, { gzip: true });
    expect(info.path).toBe('/home/user/gz/a.txt');
    expect(await sbx.files.read('gz/a.txt')).toBe(text);
    expect(await sbx.files.read('gz/a.txt', { gzip: true })).toBe(text);
    expect(Buffer.from(await sbx.files.read('gz/a.txt', { format: 'bytes', gzip: true })).toString()).toBe(
      text,
    );
    const stream = new Blob(['streamed and gzipped '.repeat(1000)]).stream();
    await sbx.files.write('gz/s.txt', stream, { gzip: true, useOctetStream: true });
    expect(await sbx.files.read('gz/s.txt')).toBe('streamed and gzipped '.repeat(1000));
    const many = await sbx.files.writeFiles(
      [
        { path: 'gz/m1.txt', data: 'one' },
        { path: 'gz/m2.txt', data: 'two' },
      ],
      { gzip: true },
    );
    expect(many.map((m) => m.name)).toEqual(['m1.txt', 'm2.txt']);
    expect(await sbx.files.read('gz/m2.txt')).toBe('two');
  });

  it("answers bad paths as envd does, and a sandbox's paths never reach the host", async () => {
    await expect(sbx.files.read('no/such/file')).rejects.toBeInstanceOf(e2b.FileNotFoundError);
    await expect(sbx.files.read('no/such/file')).rejects.toThrow(
      "path '/home/user/no/such/file' does not exist",
    );
    await expect(sbx.files.read('/tmp')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    await expect(sbx.files.write('/tmp', 'x')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    await expect(sbx.files.getInfo('bad\0name')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    await expect(sbx.files.write('bad\0name', 'x')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    await expect(sbx.files.exists('x'.repeat(5000))).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    await expect(sbx.files.getInfo('~root/x')).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    // An unknown user is envd's 401 on both transports: AuthenticationError.
    await expect(sbx.files.list('.', { user: 'nobody-here' })).rejects.toBeInstanceOf(
      e2b.AuthenticationError,
    );
    await expect(sbx.files.read('x', { user: 'nobody-here' })).rejects.toBeInstanceOf(
      e2b.AuthenticationError,
    );

    // A marker on the host, and every way a sandbox path could try to reach it.
    const hostDir = mkdtempSync(join(tmpdir(), 'covef-host-'));
    writeFileSync(join(hostDir, 'marker'), 'host');
    try {
      await sbx.commands.run(
        'ln -s / ~/to-root && ln -s ../../.. ~/up && ln -s ../../../../../../.. ~/way-up',
      );
      for (const p of [
        `../../../..${hostDir}/marker`,
        `to-root${hostDir}/marker`,
        `up${hostDir}/marker`,
        `way-up/..${hostDir}/marker`,
        `${hostDir}/marker`,
      ])
        expect(await sbx.files.exists(p)).toBe(false);
      expect((await sbx.files.getInfo('way-up')).symlinkTarget).toBe('/');
      const viaLink = (await sbx.files.list('to-root')).map((e) => e.name);
      const root = (await sbx.files.list('/')).map((e) => e.name);
      expect(viaLink).toEqual(root);
      expect(await sbx.files.read('up/etc/passwd')).toBe(await sbx.files.read('/etc/passwd'));
      expect((await sbx.files.getInfo('../../..')).path).toBe('/');
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });
});
