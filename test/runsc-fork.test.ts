import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canRunSandboxes,
  pointSdkAt,
  startTestCove,
  stopTestCove,
  testConfig,
  runscInstalled,
} from './helpers.ts';
import { startHolder, told } from './memory-holder.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type Sandbox = InstanceType<E2b['Sandbox']>;

/**
 * Fork with memory on gVisor through the unmodified SDK (spec 2.10): the forks get the source's
 * running processes (same pids, same memory), files and env; the source runs on with its id,
 * processes and end time; each fork is its own sandbox (id, address, files). A source gVisor
 * cannot save (a Node server) is forked by its files, and never stops.
 */
describe.skipIf(!canRunSandboxes || !runscInstalled)('fork with memory on gVisor', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ runtime: 'runsc' }));
    pointSdkAt(cove);
    e2b = await loadE2b();
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('forks with the running processes and their memory; the source runs on', async () => {
    const sbx = await e2b.Sandbox.create('base', {
      timeoutMs: 300_000,
      envs: { FORK_VAR: 'inherited' },
      metadata: { test: randomUUID() },
    });
    await sbx.files.write('/home/user/file.txt', 'before the fork');
    const holder = { pid: await startHolder(sbx) };
    const value = await told(sbx);
    expect(value).toMatch(/^\d+$/);
    const endAt = (await sbx.getInfo()).endAt;

    const forks = await e2b.Sandbox.fork(sbx.sandboxId, { count: 2 });
    const made = forks.filter((f): f is Sandbox => f instanceof e2b.Sandbox);
    expect(made).toHaveLength(2);
    const ips = new Set<string>();
    for (const fork of made) {
      expect(fork.sandboxId).not.toBe(sbx.sandboxId);
      expect((await fork.commands.list()).map((p) => p.pid)).toContain(holder.pid); // restored, not restarted
      expect(await told(fork)).toBe(value); // the same memory
      expect(await fork.files.read('/home/user/file.txt')).toBe('before the fork');
      expect((await fork.commands.run('echo "$FORK_VAR"')).stdout.trim()).toBe('inherited');
      ips.add((await fork.commands.run("hostname -I | awk '{print $1}'")).stdout.trim());
    }
    await made[0]!.files.write('/home/user/file.txt', 'fork 0 wrote this');
    expect(await made[1]!.files.read('/home/user/file.txt')).toBe('before the fork');
    expect(await sbx.files.read('/home/user/file.txt')).toBe('before the fork');

    // The source: same id, same process and memory, same end time, own address.
    expect((await sbx.commands.list()).map((p) => p.pid)).toContain(holder.pid);
    expect(await told(sbx)).toBe(value);
    expect((await sbx.getInfo()).endAt).toEqual(endAt);
    ips.add((await sbx.commands.run("hostname -I | awk '{print $1}'")).stdout.trim());
    expect(ips.size).toBe(3);
    for (const s of [...made, sbx]) await s.kill();
  });

  it('forks the files of a source gVisor cannot save (a Node server), which keeps running', async () => {
    const sbx = await e2b.Sandbox.create('base', { timeoutMs: 300_000, metadata: { test: randomUUID() } });
    await sbx.files.write('/home/user/file.txt', 'files only');
    const server = await sbx.commands.run(
      `node -e "require('http').createServer((q, s) => s.end('ok')).listen(8000)"`,
      { background: true },
    );
    await new Promise((r) => setTimeout(r, 1000));
    const [fork] = await e2b.Sandbox.fork(sbx.sandboxId);
    if (!(fork instanceof e2b.Sandbox)) throw new Error(`fork failed: ${String(fork)}`);
    expect(await fork.files.read('/home/user/file.txt')).toBe('files only');
    expect((await fork.commands.list()).map((p) => p.pid)).not.toContain(server.pid); // booted fresh
    expect((await sbx.commands.list()).map((p) => p.pid)).toContain(server.pid); // never stopped
    await fork.kill();
    await sbx.kill();
  });
});
