import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from './helpers.ts';
import { CONNECTED_HOLDER, startHolder, told } from './memory-holder.ts';
import { microvmReady } from './microvm-host.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type Sandbox = InstanceType<E2b['Sandbox']>;

const config = testConfig({ runtime: 'microvm' });
const qemuInstalled = microvmReady(config);

/**
 * Pause with memory and fork on the microvm backend through the unmodified SDK, under whatever
 * accelerator the host has (TCG here): QEMU saves the VM into a file and a new QEMU loads it,
 * with its processes, memory and open connections; the clock is set from the host after each
 * restore; a fork is the same VM with its own disk copy, name and address.
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('pause and fork of microVMs', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let sbx: Sandbox;
  let holderPid: number;

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
    await sbx.files.write('/home/user/file.txt', 'before');
    holderPid = await startHolder(sbx, CONNECTED_HOLDER);
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('pauses to disk and resumes with processes, memory, a TCP connection and the clock', async () => {
    const value = await told(sbx);
    expect(value).toMatch(/^\d+$/);
    await sbx.pause();
    const record = cove.manager.get(sbx.sandboxId);
    expect(record.state).toBe('paused');
    const image = join(cove.config.home, 'sandboxes', sbx.sandboxId, 'image', 'state');
    expect(existsSync(image)).toBe(true); // the VM's memory is in a file; no QEMU runs it
    await new Promise((r) => setTimeout(r, 6000)); // a guest clock left stopped would lag by this

    const resumed = await e2b.Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 });
    expect((await resumed.commands.list()).map((p) => p.pid)).toContain(holderPid);
    expect(await told(resumed)).toBe(value);
    await resumed.files.write('/tmp/go', '');
    const got = await resumed.commands.run(
      'for i in $(seq 100); do [ -s /tmp/got ] && break; sleep 0.1; done; cat /tmp/got',
    );
    expect(got.stdout).toBe('still connected');
    const date = Number((await resumed.commands.run('date +%s.%N')).stdout);
    expect(Math.abs(date - Date.now() / 1000)).toBeLessThan(3);
    expect(await resumed.files.read('/home/user/file.txt')).toBe('before');
  });

  it('forks a running VM: the same processes and memory, its own disk, name and address', async () => {
    const value = await told(sbx);
    const forks = await e2b.Sandbox.fork(sbx.sandboxId, { count: 1 });
    const fork = forks[0];
    if (!(fork instanceof e2b.Sandbox)) throw new Error(`the fork failed: ${String(fork)}`);
    try {
      expect(fork.sandboxId).not.toBe(sbx.sandboxId);
      expect((await fork.commands.list()).map((p) => p.pid)).toContain(holderPid);
      expect(await told(fork)).toBe(value);
      const probe = 'hostname; hostname -I';
      const [mine, theirs] = await Promise.all([fork.commands.run(probe), sbx.commands.run(probe)]);
      const [name, ip] = mine.stdout.trim().split('\n');
      expect(name).toBe(fork.sandboxId);
      expect(ip?.trim()).toBe(cove.manager.get(fork.sandboxId).address);
      expect(theirs.stdout.trim().split('\n')[1]?.trim()).toBe(cove.manager.get(sbx.sandboxId).address);
      await fork.files.write('/home/user/file.txt', 'the fork wrote this');
      expect(await sbx.files.read('/home/user/file.txt')).toBe('before');
      expect(await fork.files.read('/home/user/file.txt')).toBe('the fork wrote this');
    } finally {
      await fork.kill();
    }
    expect((await sbx.commands.list()).map((p) => p.pid)).toContain(holderPid); // the source runs on
    await sbx.kill();
  });
});
