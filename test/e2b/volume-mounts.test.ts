import { readdirSync, readFileSync, rmdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, Volume } from 'e2b';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import { canRunSandboxes, onRunsc, pointSdkAt, startTestCove, stopTestCove, testConfig } from '../helpers.ts';
import { scratchDir } from '../scratch.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

/** What is mounted below a sandbox's host directory: its rootfs layers and volume mounts. */
function mountsOf(cove: TestCove, id: string): string[] {
  const dir = join(cove.config.home, 'sandboxes', id);
  return readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dir}/`));
}

/** Waits until nothing is mounted for sandbox `id`: kill answers once it is unreachable, and its teardown follows. */
async function unmounted(cove: TestCove, id: string): Promise<void> {
  for (let i = 0; i < 200 && mountsOf(cove, id).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
  expect(mountsOf(cove, id)).toEqual([]);
}

/**
 * `volumeMounts` (spec 2.3, issue 13) through the unmodified SDK: a volume's files, written in
 * one sandbox, are the volume-content API's and every other sandbox's that mounts it, with the
 * sandbox's own owners; the volume's quota holds inside; a mounted volume cannot be deleted;
 * paths and links cannot leave the volume or reach the host; kill and restart leave no mount.
 * COVE_TEST_RUNTIME=runsc runs the same on gVisor.
 */
describe.skipIf(!canRunSandboxes)('volumes mounted into sandboxes through the e2b SDK', () => {
  let cove: TestCove;
  const config = testConfig({ volumeSizeMB: 8 });

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
    delete process.env.E2B_VOLUME_API_URL;
  });

  it('shares files between sandboxes and the content API; they outlive the sandboxes; in use → 409', async () => {
    const vol = await Volume.create('shared');
    const a = await Sandbox.create('base', { volumeMounts: { '/mnt/data': vol } });
    expect((await a.getInfo()).volumeMounts).toEqual([{ name: 'shared', path: '/mnt/data' }]);
    await a.files.write('/mnt/data/from-a.txt', 'written in A');
    const run = await a.commands.run('echo by-user > /mnt/data/cmd.txt && stat -c %U:%G /mnt/data/cmd.txt');
    expect(run.stdout).toBe('user:user\n'); // the volume's root is the default user's
    await a.commands.run('mkdir /mnt/data/root-dir', { user: 'root' });

    // The volume keeps the sandbox's own ids: 1000 for `user`, 0 for root.
    expect(await vol.readFile('/from-a.txt')).toBe('written in A');
    expect(await vol.getInfo('/cmd.txt')).toMatchObject({ uid: 1000, gid: 1000, size: 8 });
    expect(await vol.getInfo('/root-dir')).toMatchObject({ uid: 0, type: 'directory' });
    await vol.writeFile('/from-api.txt', 'written by the API', { uid: 1000, gid: 1000 });

    // Another sandbox, by name and at another path, at the same time: both see each other's writes.
    const b = await Sandbox.create('base', { volumeMounts: { '/data': 'shared' } });
    expect(await b.files.read('/data/from-a.txt')).toBe('written in A');
    expect(await b.files.read('/data/from-api.txt')).toBe('written by the API');
    await b.commands.run('echo from-b > /data/from-b.txt');
    expect(await a.files.read('/mnt/data/from-b.txt')).toBe('from-b\n');
    expect((await Sandbox.list().nextItems()).find((s) => s.sandboxId === b.sandboxId)?.volumeMounts).toEqual(
      [{ name: 'shared', path: '/data' }],
    );

    await expect(Volume.destroy(vol.volumeId)).rejects.toThrow(/mounted by sandbox/);
    await a.kill();
    await unmounted(cove, a.sandboxId);
    await expect(Volume.destroy(vol.volumeId)).rejects.toThrow(/mounted by sandbox/);
    await b.kill();
    await unmounted(cove, b.sandboxId);

    // Outlives both: the API and the next sandbox find everything.
    expect(await vol.readFile('/from-b.txt')).toBe('from-b\n');
    const c = await Sandbox.create('base', { volumeMounts: { '/work': vol } });
    expect((await c.commands.run('ls /work')).stdout.split('\n').filter(Boolean).sort()).toEqual([
      'cmd.txt',
      'from-a.txt',
      'from-api.txt',
      'from-b.txt',
      'root-dir',
    ]);
    await c.kill();
    expect(await Volume.destroy(vol.volumeId)).toBe(true);
  });

  it("refuses writes past the volume's quota inside the sandbox, and the API sees the same room", async () => {
    const vol = await Volume.create('small'); // 8 MiB (volumeSizeMB)
    const sbx = await Sandbox.create('base', { volumeMounts: { '/data': vol } });
    const df = await sbx.commands.run('df -B1 --output=avail /data | tail -1');
    const avail = Number(df.stdout.trim());
    expect(avail).toBeGreaterThanOrEqual(8 * 2 ** 20);
    expect(avail).toBeLessThan(9 * 2 ** 20);

    const fill = await sbx.commands
      .run('dd if=/dev/zero of=/data/big bs=1M count=20 2>&1')
      .catch((e: { exitCode: number; stdout: string }) => e);
    expect(fill.exitCode).not.toBe(0);
    expect(fill.stdout).toMatch(/No space left on device/);
    await expect(vol.writeFile('/more', new ArrayBuffer(2 ** 20))).rejects.toThrow(/volume is full/);
    await sbx.commands.run('rm /data/big && sync -f /data'); // freed at the journal's commit
    await vol.writeFile('/more', new ArrayBuffer(2 ** 20));
    await sbx.kill();
    await Volume.destroy(vol.volumeId);
  });

  it('refuses bad mount paths and unknown volumes with a 400, creating nothing', async () => {
    const vol = await Volume.create('paths');
    const before = (await Sandbox.list().nextItems()).length;
    for (const [path, why] of [
      ['/proc/data', /cannot mount at \/proc\/data/],
      ['/proc', /cannot mount at \/proc/],
      ['/sys/x', /cannot mount at/],
      ['/', /cannot mount at \/:/],
      ['/.cove/run', /cannot mount at/],
      ['/data/../etc', /may not contain "\.\."/],
      ['data', /not absolute/],
    ] as const)
      await expect(Sandbox.create('base', { volumeMounts: { [path]: vol } })).rejects.toThrow(why);
    await expect(Sandbox.create('base', { volumeMounts: { '/a': vol, '/a/b': vol } })).rejects.toThrow(
      /overlaps/,
    );
    await expect(Sandbox.create('base', { volumeMounts: { '/data': 'no-such-volume' } })).rejects.toThrow(
      /no volume named "no-such-volume"/,
    );
    expect((await Sandbox.list().nextItems()).length).toBe(before);
    await Volume.destroy(vol.volumeId);
  });

  it('a sandbox cannot leave its volume: links resolve in its own root, setuid is off, no host path', async () => {
    const vol = await Volume.create('escape');
    const sbx = await Sandbox.create('base', { volumeMounts: { '/vols/v': vol } });
    const root = (cmd: string) => sbx.commands.run(cmd, { user: 'root' });
    // A link to / in the volume is the sandbox's own root, in this sandbox and in the API's view.
    const marker = `marker-${sbx.sandboxId}`;
    await root(`touch /${marker} && ln -s / /vols/v/root && ln -s ../../../../../../../etc /vols/v/up`);
    expect((await root('ls /vols/v/root/')).stdout.split('\n')).toEqual(
      expect.arrayContaining([marker, 'vols']),
    );
    expect((await root('readlink -f /vols/v/up')).stdout.trim()).toBe('/etc');
    await expect(vol.readFile('/root/etc/hostname')).rejects.toThrow(/symlink/);
    // `..` from the volume's root is the sandbox's /vols.
    expect((await root('stat -c %i /vols/v/.. && stat -c %i /vols')).stdout.split('\n')[0]).toBe(
      (await root('stat -c %i /vols')).stdout.trim(),
    );
    // nosuid: a setuid-root copy of cat in the volume gives `user` nothing.
    await root(
      'cp /bin/cat /vols/v/scat && chmod 4755 /vols/v/scat && echo secret > /root/s && chmod 600 /root/s',
    );
    const suid = await sbx.commands.run('/vols/v/scat /root/s').catch((e: { exitCode: number }) => e);
    expect(suid.exitCode).not.toBe(0);
    // The volume's mount names no host path (its root is its own filesystem's), and stays put.
    const info = (await root('grep " /vols/v " /proc/self/mountinfo')).stdout;
    expect(info).toMatch(/ \/ \/vols\/v rw/);
    expect(info).not.toContain(cove.config.home);
    expect(
      (await root('mount -t tmpfs none /vols/v 2>&1; echo $?')).stdout.trim().split('\n').at(-1),
    ).not.toBe('0');

    // A link left at the mount path before a reboot (its parent renamed away, the mount with
    // it), to a directory the host has and the sandbox has not. It is resolved in the
    // sandbox's root: crun finds nothing there and refuses to boot; gVisor makes the directory
    // inside the sandbox and mounts the volume there. The host's directory is untouched.
    const hostDir = scratchDir('cove-escape-'); // removed, unmounted first, should the test fail
    await root(`mv /vols /vols.old && mkdir /vols && ln -s /../../../../..${hostDir} /vols/v`);
    expect(await sbx.pause({ keepMemory: false })).toBe(true);
    expect(mountsOf(cove, sbx.sandboxId)).toEqual([]); // unmounted while paused
    await expect(Volume.destroy(vol.volumeId)).rejects.toThrow(/mounted by sandbox/); // its resume needs it
    const resumed = await Sandbox.connect(sbx.sandboxId).catch((err: unknown) => err);
    if (resumed instanceof Sandbox)
      expect((await resumed.commands.run(`ls ${hostDir}`)).stdout).toContain('scat');
    else expect(String(resumed)).toMatch(/vols\/v/);
    expect(readdirSync(hostDir)).toEqual([]);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.toContain(hostDir);
    rmdirSync(hostDir);
    await Sandbox.kill(sbx.sandboxId);
    await unmounted(cove, sbx.sandboxId);
    expect((await vol.getInfo('/scat')).size).toBeGreaterThan(0); // the volume's files are intact
    await Volume.destroy(vol.volumeId);
  });

  it('keeps a volume over a memory pause and resume: frozen in place on crun, checkpointed on gVisor', async () => {
    const vol = await Volume.create('paused');
    const sbx = await Sandbox.create('base', { volumeMounts: { '/data': vol } });
    await sbx.files.write('/data/before.txt', 'before the pause');
    expect(await sbx.pause()).toBe(true);
    const kept = onRunsc ? 'memory' : 'frozen';
    expect(cove.manager.get(sbx.sandboxId).paused).toBe(kept);
    const volumeMounted = () => mountsOf(cove, sbx.sandboxId).some((m) => m.includes('/volumes/'));
    // A checkpointed sandbox's mounts are released after the pause answers (manager/pause.ts).
    for (let i = 0; i < 200 && kept === 'memory' && volumeMounted(); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(volumeMounted()).toBe(kept === 'frozen');
    expect((await Sandbox.getInfo(sbx.sandboxId)).volumeMounts).toEqual([{ name: 'paused', path: '/data' }]);
    await expect(Volume.destroy(vol.volumeId)).rejects.toThrow(/mounted by sandbox/);
    const resumed = await Sandbox.connect(sbx.sandboxId);
    expect(await resumed.files.read('/data/before.txt')).toBe('before the pause');
    await resumed.files.write('/data/after.txt', 'after the resume');
    expect(await vol.readFile('/after.txt')).toBe('after the resume');
    await resumed.kill();
    await unmounted(cove, sbx.sandboxId);
    expect(await Volume.destroy(vol.volumeId)).toBe(true);
  });

  it('keeps mounts of adopted sandboxes over a restart, and removes those of orphans', async () => {
    const vol = await Volume.create('restart');
    const kept = await Sandbox.create('base', { volumeMounts: { '/data': vol } });
    const orphan = await Sandbox.create('base', { volumeMounts: { '/data': vol } });
    await kept.files.write('/data/before.txt', 'before the restart');
    await cove.close();
    // A crash that lost the orphan's record: its mounts are nobody's.
    const store = createSqliteStore(join(config.home, 'cove.db'));
    store.deleteSandbox(orphan.sandboxId);
    store.close();
    cove = await startTestCove(config);
    pointSdkAt(cove);
    expect(cove.reconciled.orphans).toContain(orphan.sandboxId);
    expect(mountsOf(cove, orphan.sandboxId)).toEqual([]);
    const adopted = await Sandbox.connect(kept.sandboxId); // the new server's URL
    expect(await adopted.files.read('/data/before.txt')).toBe('before the restart');
    await adopted.files.write('/data/after.txt', 'after');
    expect(await vol.readFile('/after.txt')).toBe('after');
    await adopted.kill();
    expect(await Volume.destroy(vol.volumeId)).toBe(true);
  });
});
