import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from './helpers.ts';
import { holdingSandbox, told } from './memory-holder.ts';
import { microvmReady } from './microvm-host.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type Sandbox = InstanceType<E2b['Sandbox']>;

const config = testConfig({ runtime: 'microvm' });
const qemuInstalled = microvmReady(config);

const pids = async (s: Sandbox) => (await s.commands.list()).map((p) => p.pid);

/**
 * Snapshots and forks of microVMs through the unmodified SDK (TCG here): a snapshot is the
 * VM's memory and a copy of its disk, saved while it runs on (src/manager/vm-image.ts);
 * sandboxes made from it are restored with its processes and share nothing; fork is the same
 * with a snapshot no one names. The disk budget counts a VM's own disk layer.
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('snapshots and forks of microVMs', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let sbx: Sandbox;
  let holderPid: number;
  let value: string;

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
    e2b = await loadE2b();
    ({ sbx, holderPid, value } = await holdingSandbox(e2b));
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('two sandboxes from one snapshot: its processes and files in each, shared by none; the source runs on', async () => {
    const snapshot = await sbx.createSnapshot();
    const dir = join(cove.config.home, 'snapshots', snapshot.snapshotId);
    expect(existsSync(join(dir, 'image', 'state'))).toBe(true); // memory, beside a copy of the disk
    expect(await sbx.isRunning()).toBe(true);
    expect(await pids(sbx)).toContain(holderPid); // saved while it ran: nothing restarted

    const [a, b] = await Promise.all([
      e2b.Sandbox.create(snapshot.snapshotId, { timeoutMs: 600_000 }),
      e2b.Sandbox.create(snapshot.snapshotId, { timeoutMs: 600_000 }),
    ]);
    try {
      for (const s of [a, b]) {
        expect(await pids(s)).toContain(holderPid);
        expect(await told(s)).toBe(value);
        expect(await s.files.read('/home/user/file.txt')).toBe('before');
        const r = await s.commands.run('hostname; hostname -I');
        expect(r.stdout.split('\n').map((l) => l.trim())).toEqual([
          s.sandboxId,
          cove.manager.get(s.sandboxId).address,
          '',
        ]);
      }
      await a.files.write('/home/user/file.txt', 'a wrote this');
      await a.commands.run('pkill -f ^python3.*holde[r]');
      expect(await b.files.read('/home/user/file.txt')).toBe('before');
      expect(await sbx.files.read('/home/user/file.txt')).toBe('before');
      expect(await pids(b)).toContain(holderPid);
      expect(await pids(sbx)).toContain(holderPid);
    } finally {
      await Promise.all([a.kill(), b.kill()]);
    }
    expect(await e2b.Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
    expect(existsSync(dir)).toBe(false);
  });

  it('forks two: each the source as it was, with its own name, address and disk', async () => {
    const forks = await sbx.fork({ count: 2 });
    const ok = forks.filter((f): f is Sandbox => f instanceof e2b.Sandbox);
    expect(ok).toHaveLength(2);
    try {
      expect(new Set(ok.map((f) => cove.manager.get(f.sandboxId).address)).size).toBe(2);
      for (const f of ok) {
        expect(await pids(f)).toContain(holderPid);
        expect(await told(f)).toBe(value);
        expect((await f.commands.run('hostname')).stdout.trim()).toBe(f.sandboxId);
      }
      await ok[0]!.files.write('/home/user/file.txt', 'fork 0');
      expect(await ok[1]!.files.read('/home/user/file.txt')).toBe('before');
    } finally {
      await Promise.all(ok.map((f) => f.kill()));
    }
    expect(await pids(sbx)).toContain(holderPid);
    expect(await told(sbx)).toBe(value);
    expect(await sbx.files.read('/home/user/file.txt')).toBe('before');
  });

  it('a snapshot of a VM paused with its memory: a sandbox from it has its processes, and it resumes', async () => {
    await sbx.pause();
    const snapshot = await e2b.Sandbox.createSnapshot(sbx.sandboxId);
    const from = await e2b.Sandbox.create(snapshot.snapshotId, { timeoutMs: 600_000 });
    try {
      expect(await pids(from)).toContain(holderPid);
      expect(await told(from)).toBe(value);
    } finally {
      await from.kill();
    }
    const resumed = await e2b.Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 });
    expect(await pids(resumed)).toContain(holderPid);
    expect(await told(resumed)).toBe(value);
    expect(await e2b.Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
  });
});

describe.skipIf(!canRunSandboxes || !qemuInstalled)('the disk budget counts a microVM disk layer', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;

  beforeAll(async () => {
    cove = await startTestCove({ ...testConfig({ runtime: 'microvm' }), storageBudgetMiB: 64 });
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('refuses to pause a VM whose disk layer is past the budget, and a snapshot of its memory', async () => {
    pointSdkAt(cove);
    const e2b = await loadE2b();
    const sbx = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
    // 96 MiB in the VM's own disk (its qcow2 layer); nothing in an overlay's upper directory.
    await sbx.commands.run('head -c 96M /dev/urandom > /home/user/big && sync');
    await expect(sbx.pause({ keepMemory: false })).rejects.toThrow(/budget/);
    await expect(sbx.createSnapshot()).rejects.toThrow(/budget/);
    expect(await sbx.isRunning()).toBe(true);
    expect((await sbx.commands.run('stat -c %s /home/user/big')).stdout.trim()).toBe(String(96 << 20));
    await sbx.kill();
  });
});
