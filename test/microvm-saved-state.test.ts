import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from './helpers.ts';
import { holdingSandbox, told } from './memory-holder.ts';
import { microvmReady } from './microvm-host.ts';

const loadE2b = () => import('e2b');
type Sandbox = InstanceType<Awaited<ReturnType<typeof loadE2b>>['Sandbox']>;

const shared = testConfig({ runtime: 'microvm' });
const qemuInstalled = microvmReady(shared);

/**
 * The microVM cache of this file's own: the shared guest kernel, but its own template images
 * and saved template VMs, so that losing their RAM files (a reboot) touches no other run's.
 */
function ownCache(): string {
  const dir = mkdtempSync(join(tmpdir(), 'cove-vmcache-'));
  mkdirSync(dir, { recursive: true });
  symlinkSync(join(shared.microvm.cacheDir, 'guest'), join(dir, 'guest'));
  return dir;
}

/** The RAM files of the saved template VMs in `cacheDir` (template-vm.ts: meta.json names each). */
function ramFiles(cacheDir: string): string[] {
  const root = join(cacheDir, 'vm-snapshots');
  return readdirSync(root)
    .filter((n) => !n.includes('.tmp-'))
    .map((n) => (JSON.parse(readFileSync(join(root, n, 'meta.json'), 'utf8')) as { memory: string }).memory);
}

/** The file a qcow2 layer is made on, and which file it is (inode, last change). */
function backingOf(layer: string): { path: string; file: string } {
  const info = JSON.parse(
    execFileSync('qemu-img', ['info', '-U', '--output=json', layer], { encoding: 'utf8' }),
  ) as { 'full-backing-filename': string };
  const path = info['full-backing-filename'];
  const st = statSync(path);
  return { path, file: `${st.ino}:${st.mtimeMs}:${st.size}` };
}

const pids = async (s: Sandbox) => (await s.commands.list()).map((p) => p.pid);

/**
 * What a microVM saved (a pause with memory, a snapshot) survives on the host's side, through
 * the unmodified SDK (TCG here): a host reboot loses the template VM's RAM file on /dev/shm,
 * and the next VM saves the template VM again, without touching the disk the saved layers are
 * made on; a server whose default backend is crun restores them as VMs still.
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('saved microVM state across reboots and defaults', () => {
  const cacheDir = canRunSandboxes && qemuInstalled ? ownCache() : '';
  const config: Config = { ...shared, microvm: { ...shared.microvm, cacheDir } };
  let cove: Awaited<ReturnType<typeof startTestCove>> | undefined;
  let e2b: Awaited<ReturnType<typeof loadE2b>>;
  let sbx: Sandbox;
  let holderPid: number;
  let value: string;
  let snapshotId: string;

  /** Stops the server, leaving its sandboxes (as a crash or a reboot would), and starts it as `runtime`'s. */
  async function restart(runtime: Config['runtime']) {
    await cove?.close();
    cove = await startTestCove({ ...config, runtime });
    pointSdkAt(cove);
  }

  beforeAll(async () => {
    await restart('microvm');
    e2b = await loadE2b();
    ({ sbx, holderPid, value } = await holdingSandbox(e2b));
  }, 600_000);

  afterAll(async () => {
    try {
      if (snapshotId) await e2b.Sandbox.deleteSnapshot(snapshotId).catch(() => undefined);
      if (cove) expect(await stopTestCove(cove)).toEqual([]);
    } finally {
      if (cacheDir) {
        for (const ram of ramFiles(cacheDir)) rmSync(ram, { force: true });
        rmSync(cacheDir, { recursive: true, force: true });
      }
    }
  });

  it('a reboot loses the template VM, never the disk a paused VM and a snapshot are made on', async () => {
    snapshotId = (await sbx.createSnapshot()).snapshotId;
    await sbx.pause();
    const { home } = config;
    const layers = [
      join(home, 'sandboxes', sbx.sandboxId, 'disk.qcow2'),
      join(home, 'snapshots', snapshotId, 'image', 'disk.qcow2'),
    ];
    const backings = layers.map(backingOf);
    // The reboot: /dev/shm is empty, and the server starts again.
    const lost = ramFiles(cacheDir);
    expect(lost.length).toBeGreaterThan(0);
    for (const ram of lost) rmSync(ram);
    await restart('microvm');
    // A new VM saves the template VM again (its RAM was lost) and is a clone of it.
    const other = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
    expect((await other.commands.run('echo ok')).stdout).toBe('ok\n');
    await other.kill();
    expect(ramFiles(cacheDir).some((r) => !lost.includes(r))).toBe(true);
    // The disk under the saved layers is the one they were written over, not a new one.
    expect(layers.map(backingOf)).toEqual(backings);

    const resumed = await e2b.Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 });
    expect(await pids(resumed)).toContain(holderPid);
    expect(await told(resumed)).toBe(value);
    expect(await resumed.files.read('/home/user/file.txt')).toBe('before');
    await resumed.files.write('/home/user/file.txt', 'after the reboot');
    const from = await e2b.Sandbox.create(snapshotId, { timeoutMs: 600_000 });
    try {
      expect(await pids(from)).toContain(holderPid);
      expect(await from.files.read('/home/user/file.txt')).toBe('before');
      expect((await from.commands.run('hostname')).stdout.trim()).toBe(from.sandboxId);
    } finally {
      await from.kill();
    }
    await resumed.pause();
  });

  it('under a crun default, a VM paused with its memory and a VM snapshot are restored as VMs', async () => {
    await restart('crun');
    const resumed = await e2b.Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 });
    expect(cove!.manager.get(sbx.sandboxId).runtime).toBe('microvm');
    expect(await told(resumed)).toBe(value);
    expect(await resumed.files.read('/home/user/file.txt')).toBe('after the reboot');
    const from = await e2b.Sandbox.create(snapshotId, { timeoutMs: 600_000 });
    try {
      expect(cove!.manager.get(from.sandboxId).runtime).toBe('microvm');
      expect((await from.commands.run('uname -r')).stdout.trim()).not.toBe(release()); // its own kernel
      expect(await pids(from)).toContain(holderPid);
      expect(await told(from)).toBe(value);
      expect(await from.files.read('/home/user/file.txt')).toBe('before');
    } finally {
      await from.kill();
    }
    await resumed.kill();
    expect(await e2b.Sandbox.deleteSnapshot(snapshotId)).toBe(true);
    snapshotId = '';
  });
});
