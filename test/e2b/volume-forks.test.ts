import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, Volume } from 'e2b';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

/**
 * Volumes of forks and snapshots (issue 13) through the unmodified SDK. A volume is shared
 * storage, not part of the files a fork or a snapshot copies: as E2B's forks (infra: a fork
 * resumes its source's snapshot config, volume mounts included), a fork mounts the same
 * volumes at the same paths, live; a sandbox created from a snapshot mounts the snapshot's
 * source's volumes again unless its create names its own (`volumeMounts`, `{}` for none). A
 * volume that is gone by then is a 400 that creates nothing, never a mount silently dropped.
 */
describe.skipIf(!canRunSandboxes)('volumes of forks and snapshots through the e2b SDK', () => {
  let cove: TestCove;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ volumeSizeMB: 8 }));
    pointSdkAt(cove);
  });
  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
    delete process.env.E2B_VOLUME_API_URL;
  });

  const read = async (sbx: Sandbox, path: string) => (await sbx.commands.run(`cat ${path}`)).stdout;

  it('a fork mounts its source’s volumes at the same paths, shared live with the source', async () => {
    const vol = await Volume.create('fork-shared');
    const source = await Sandbox.create('base', { volumeMounts: { '/mnt/data': vol } });
    await source.files.write('/mnt/data/from-source.txt', 'source');
    await source.files.write('/home/user/local.txt', 'copied, not shared');
    const [fork] = await source.fork();
    if (!(fork instanceof Sandbox)) throw new Error(`fork failed: ${String(fork)}`);
    expect((await fork.getInfo()).volumeMounts).toEqual([{ name: 'fork-shared', path: '/mnt/data' }]);
    expect(await read(fork, '/mnt/data/from-source.txt')).toBe('source');
    await fork.files.write('/mnt/data/from-fork.txt', 'fork');
    expect(await read(source, '/mnt/data/from-fork.txt')).toBe('fork'); // one filesystem, no copy
    expect(await vol.readFile('/from-fork.txt')).toBe('fork');
    await fork.files.write('/home/user/local.txt', 'changed in the fork');
    expect(await read(source, '/home/user/local.txt')).toBe('copied, not shared');
    // still in use by the fork after the source is gone
    await source.kill();
    await expect(Volume.destroy(vol.volumeId)).rejects.toThrow(/409|mounted by sandbox/);
    await fork.kill();
  });

  it('a sandbox from a snapshot mounts its source’s volumes unless it names its own; a volume gone → 400', async () => {
    const vol = await Volume.create('snap-shared');
    const other = await Volume.create('snap-other');
    const source = await Sandbox.create('base', { volumeMounts: { '/mnt/data': vol } });
    await source.files.write('/mnt/data/a.txt', 'in the volume');
    const snapshot = await source.createSnapshot();
    await source.kill();
    await vol.writeFile('/b.txt', 'written after the snapshot');

    const same = await Sandbox.create(snapshot.snapshotId);
    expect((await same.getInfo()).volumeMounts).toEqual([{ name: 'snap-shared', path: '/mnt/data' }]);
    expect(await read(same, '/mnt/data/b.txt')).toBe('written after the snapshot'); // the volume, live
    const none = await Sandbox.create(snapshot.snapshotId, { volumeMounts: {} });
    expect((await none.getInfo()).volumeMounts).toEqual([]);
    expect((await none.commands.run('ls -A /mnt/data')).stdout).toBe(''); // the mount point only
    const own = await Sandbox.create(snapshot.snapshotId, { volumeMounts: { '/srv/other': other } });
    expect((await own.getInfo()).volumeMounts).toEqual([{ name: 'snap-other', path: '/srv/other' }]);
    await Promise.all([same.kill(), none.kill(), own.kill()]);

    // The volume is deleted: a create from the snapshot that would mount it is refused.
    for (let i = 0; i < 100; i++) {
      // a kill's teardown may still hold it for a moment (409)
      const gone = await Volume.destroy(vol.volumeId).catch((err: unknown) => {
        if (/409/.test(String(err))) return false;
        throw err;
      });
      if (gone) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const before = cove.manager.list().length;
    const err = await Sandbox.create(snapshot.snapshotId).catch((e: unknown) => e);
    expect(String(err)).toMatch(
      /400.*volume "snap-shared", mounted at \/mnt\/data in snapshot .* no longer exists/,
    );
    expect(cove.manager.list().length).toBe(before);
    const fine = await Sandbox.create(snapshot.snapshotId, { volumeMounts: {} }); // naming none still works
    await fine.kill();
    await Sandbox.deleteSnapshot(snapshot.snapshotId);
  });
});
