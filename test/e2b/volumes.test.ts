import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Volume, VolumeError, VolumeFileType, VolumePathNotFoundError } from 'e2b';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

/**
 * Volumes through the unmodified SDK: create, list, get, delete, and the volume-content API
 * with the volume's token. Mounting them into sandboxes: volume-mounts.test.ts.
 */
describe.skipIf(!canRunSandboxes)('volumes through the e2b SDK', () => {
  let cove: TestCove;
  const config = testConfig({ volumeSizeMB: 1 });

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
    delete process.env.E2B_VOLUME_API_URL;
  });

  it('creates, lists, gets and deletes volumes; names are unique', async () => {
    const vol = await Volume.create('data-crud');
    expect(vol.volumeId).toMatch(/^[a-z0-9]{20}$/);
    expect(vol.token).toBeTruthy();
    expect((await Volume.list()).map((v) => v.name)).toContain('data-crud');
    const info = await Volume.getInfo(vol.volumeId);
    expect(info).toMatchObject({ volumeId: vol.volumeId, name: 'data-crud', token: vol.token });
    await expect(Volume.create('data-crud')).rejects.toThrow(/already exists/);
    await expect(Volume.create('../etc')).rejects.toThrow(/name/);

    expect(await Volume.destroy(vol.volumeId)).toBe(true);
    expect(await Volume.destroy(vol.volumeId)).toBe(false);
    await expect(Volume.getInfo(vol.volumeId)).rejects.toThrow(/not found/);
    expect((await Volume.list()).map((v) => v.name)).not.toContain('data-crud');
  });

  it('round-trips files, directories and metadata through the content API', async () => {
    const vol = await Volume.create('data-content');
    const dir = await vol.makeDir('/a/b', { force: true, uid: 1000, gid: 1000 });
    expect(dir).toMatchObject({ type: VolumeFileType.DIRECTORY, path: '/a/b', uid: 1000, mode: 0o755 });
    const file = await vol.writeFile('/a/b/hello.txt', 'hello volume', { mode: 0o600 });
    expect(file).toMatchObject({ type: VolumeFileType.FILE, size: 12, mode: 0o600, uid: 0 });
    expect(await vol.readFile('/a/b/hello.txt')).toBe('hello volume');
    expect(await vol.readFile('/a/b/hello.txt', { format: 'bytes' })).toEqual(
      new TextEncoder().encode('hello volume'),
    );

    await expect(vol.writeFile('/a/b/hello.txt', 'again')).rejects.toThrow(/already exists/);
    await vol.writeFile('/a/b/hello.txt', 'replaced', { force: true });
    expect(await vol.readFile('/a/b/hello.txt')).toBe('replaced');
    await expect(vol.writeFile('/missing/x.txt', 'x')).rejects.toThrow(VolumePathNotFoundError);

    expect((await vol.list('/a')).map((e) => e.path)).toEqual(['/a/b']);
    expect((await vol.list('/', { depth: 3 })).map((e) => e.path)).toEqual(['/a', '/a/b', '/a/b/hello.txt']);
    const updated = await vol.updateMetadata('/a/b/hello.txt', { uid: 1000, gid: 1000, mode: 0o640 });
    expect(updated).toMatchObject({ uid: 1000, gid: 1000, mode: 0o640 });
    expect((await vol.getInfo('/a/b/hello.txt')).mtime).toBeInstanceOf(Date);

    await vol.remove('/a/b/hello.txt');
    expect(await vol.exists('/a/b/hello.txt')).toBe(false);
    await expect(vol.readFile('/a/b/hello.txt')).rejects.toThrow(VolumePathNotFoundError);
    await expect(vol.remove('/a/b/hello.txt')).rejects.toThrow(VolumePathNotFoundError);
    await Volume.destroy(vol.volumeId);
  });

  it('refuses paths that leave the volume, bad metadata and a wrong token, changing nothing', async () => {
    const vol = await Volume.create('data-bad');
    for (const path of ['/../outside.txt', '../../etc/passwd', '/a/../../b'])
      await expect(vol.writeFile(path, 'x')).rejects.toThrow(/400: .*may not leave the volume/);
    await expect(vol.readFile('/../../../etc/passwd')).rejects.toThrow(/400/);
    await expect(vol.remove('/')).rejects.toThrow(/400: .*root/);
    await expect(vol.makeDir('/d', { uid: 70_000 })).rejects.toThrow(/400: uid/);
    expect(await vol.exists('/d')).toBe(false);
    expect(await vol.list('/')).toEqual([]);

    const last = vol.token.at(-1) === '0' ? '1' : '0'; // a hex token: always a different character
    const forged = new Volume(vol.volumeId, vol.name, `${vol.token.slice(0, -1)}${last}`);
    await expect(forged.list('/')).rejects.toThrow(/invalid volume token/);
    await Volume.destroy(vol.volumeId);
    await expect(vol.list('/')).rejects.toThrow(/invalid volume token/); // its token died with it
  });

  it('refuses a write past the volume size limit and keeps what was there', async () => {
    const vol = await Volume.create('data-quota');
    await vol.writeFile('/half', new ArrayBuffer(600 * 1024));
    const err = await vol.writeFile('/more', new ArrayBuffer(600 * 1024)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(VolumeError);
    expect(String(err)).toMatch(/volume is full: its limit is 1 MiB/);
    expect(await vol.exists('/more')).toBe(false);
    expect((await vol.list('/')).map((e) => e.name)).toEqual(['half']); // no temporary file left
    // A replace is atomic: the new copy is written beside the old one, so it needs its own room.
    await vol.writeFile('/half', new ArrayBuffer(300 * 1024), { force: true });
    expect((await vol.getInfo('/half')).size).toBe(300 * 1024);
    await Volume.destroy(vol.volumeId);
  });

  it('keeps volumes and their files across a Cove restart', async () => {
    const vol = await Volume.create('data-restart');
    await vol.writeFile('/kept.txt', 'still here');
    await cove.close();
    cove = await startTestCove(config);
    pointSdkAt(cove);
    expect((await Volume.getInfo(vol.volumeId)).token).toBe(vol.token);
    expect(await vol.readFile('/kept.txt')).toBe('still here');
    await Volume.destroy(vol.volumeId);
  });
});
