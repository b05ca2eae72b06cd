import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { Sandbox, SandboxNotFoundError } from 'e2b';
import { canRunSandboxes, onMicrovm, onRunsc, startTestCove, stopTestCove } from '../helpers.ts';
import { KEEPALIVE_SERVER } from '../keepalive-server.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Where a memory pause is written to disk (a microVM saves itself, gVisor checkpoints), a
 * restart of the host loses nothing. */
const memoryOnDisk = onMicrovm || onRunsc;

/** Polls `check` until it holds (or `ms` pass): pauses on timeout come from a timer. */
async function eventually(check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await wait(200);
  }
}

/**
 * Pause and resume (spec 2.9, 2.4, 2.18) through the unmodified SDK, on crun (and on runsc and
 * microvm by COVE_TEST_RUNTIME, where a memory pause is saved to disk): a memory pause freezes
 * the sandbox in place, `keepMemory: false` keeps its files and reboots
 * it, and both survive a restart of Cove.
 */
describe.skipIf(!canRunSandboxes)('pause and resume through the e2b SDK', () => {
  let cove: TestCove;

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  async function create(opts: Parameters<typeof Sandbox.create>[1] = {}): Promise<Sandbox> {
    return Sandbox.create('base', { timeoutMs: 120_000, ...opts, metadata: { test: randomUUID() } });
  }

  /** Through the gateway by headers (Node's resolver does not know *.localhost). */
  const port = (sbx: Sandbox, p: number) =>
    fetch(cove.url, { headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(p) } });

  /** connect as the SDK sends it, to see the status the SDK hides: 201 resumed, 200 running. */
  const connectStatus = async (id: string) =>
    (
      await fetch(`${cove.url}/v2/sandboxes/${id}/connect`, {
        method: 'POST',
        headers: { 'X-API-KEY': cove.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ timeout: 120 }),
      })
    ).status;

  const bootId = async (sbx: Sandbox) =>
    (await sbx.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout.trim();

  // On runsc a server this gVisor can checkpoint (test/keepalive-server.ts says why).
  async function startServer(sbx: Sandbox): Promise<void> {
    if (onRunsc) await sbx.files.write('/home/user/server.py', KEEPALIVE_SERVER);
    const server = onRunsc ? 'python3 /home/user/server.py' : 'python3 -m http.server 8000 --bind 0.0.0.0';
    await sbx.commands.run(server, { background: true });
    await eventually(async () => (await port(sbx, 8000).catch(() => undefined))?.status === 200);
  }

  it('a memory pause keeps files, env, processes with their pids and a server; list and getInfo say paused', async () => {
    const sbx = await create({ envs: { TEST_VAR: 'sfisback' } });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    const sleeper = await sbx.commands.run('sleep 3600', { background: true });
    await startServer(sbx);
    const boot = await bootId(sbx);

    expect(await sbx.pause()).toBe(true);
    expect(await sbx.isRunning()).toBe(false);
    expect((await sbx.getInfo()).state).toBe('paused');
    const paused = await Sandbox.list({ query: { state: ['paused'] } }).nextItems();
    expect(paused.map((s) => s.sandboxId)).toContain(sbx.sandboxId);
    expect((await port(sbx, 8000)).status).toBe(502);
    expect(await sbx.pause()).toBe(false); // 409: already paused

    expect(await connectStatus(sbx.sandboxId)).toBe(201);
    expect(await connectStatus(sbx.sandboxId)).toBe(200);
    await sbx.connect();
    expect(await sbx.isRunning()).toBe(true);
    expect((await sbx.getInfo()).state).toBe('running');
    expect(await sbx.files.read('/home/user/kept.txt')).toBe('kept');
    expect((await sbx.commands.run('echo "$TEST_VAR"')).stdout.trim()).toBe('sfisback');
    expect((await sbx.commands.list()).map((p) => p.pid)).toContain(sleeper.pid);
    expect((await sbx.commands.connect(sleeper.pid)).pid).toBe(sleeper.pid);
    expect((await port(sbx, 8000)).status).toBe(200);
    expect(await bootId(sbx)).toBe(boot); // frozen, not rebooted
  });

  it('a filesystem-only pause reboots on resume: files kept, a new boot id, processes gone', async () => {
    const sbx = await create();
    await sbx.files.write('/home/user/fs.txt', 'on disk');
    await sbx.commands.run('echo root-owned > /root/r.txt', { user: 'root' });
    const sleeper = await sbx.commands.run('sleep 3600', { background: true });
    const boot = await bootId(sbx);

    expect(await sbx.pause({ keepMemory: false })).toBe(true);
    expect(await sbx.isRunning()).toBe(false);
    expect((await sbx.getInfo()).state).toBe('paused');
    const resumed = await Sandbox.connect(sbx.sandboxId);
    expect(resumed.sandboxId).toBe(sbx.sandboxId);
    expect(await resumed.isRunning()).toBe(true);
    expect(await resumed.files.read('/home/user/fs.txt')).toBe('on disk');
    expect((await resumed.commands.run('cat /root/r.txt', { user: 'root' })).stdout).toBe('root-owned\n');
    // The file is the user's still: the writable layer kept its owners.
    await resumed.files.write('/home/user/fs.txt', 'rewritten');
    expect(await bootId(resumed)).not.toBe(boot);
    expect((await resumed.commands.list()).map((p) => p.pid)).not.toContain(sleeper.pid);
  });

  it('onResume reboot (memory: false) reboots a frozen sandbox', async () => {
    const sbx = await create();
    const boot = await bootId(sbx);
    await sbx.pause();
    await sbx.connect({ onResume: 'reboot' });
    expect(await bootId(sbx)).not.toBe(boot);
  });

  it('pause, connect and kill of a killed sandbox: not found', async () => {
    const sbx = await create();
    await sbx.kill();
    await expect(Sandbox.pause(sbx.sandboxId)).rejects.toThrow(SandboxNotFoundError);
    await expect(Sandbox.connect(sbx.sandboxId)).rejects.toThrow(SandboxNotFoundError);
    expect(await Sandbox.kill(sbx.sandboxId)).toBe(false);
  });

  it('killing a paused sandbox frees its layer and its slot', async () => {
    const frozen = await create();
    const onDisk = await create();
    await frozen.pause();
    await onDisk.pause({ keepMemory: false });
    const dir = join(cove.config.home, 'sandboxes', onDisk.sandboxId);
    expect(existsSync(join(dir, 'upper'))).toBe(true);
    expect(await frozen.kill()).toBe(true);
    expect(await onDisk.kill()).toBe(true);
    // The kill is answered once the sandbox is unreachable; its layer goes with the teardown after.
    await vi.waitFor(() => expect(existsSync(dir)).toBe(false), { timeout: 20_000, interval: 100 });
    await expect(frozen.getInfo()).rejects.toThrow(SandboxNotFoundError);
    await expect(Sandbox.connect(onDisk.sandboxId)).rejects.toThrow(SandboxNotFoundError);
  });

  it('lifecycle onTimeout pause pauses at the end time; connect wakes it', async () => {
    const sbx = await create({ timeoutMs: 3_000, lifecycle: { onTimeout: 'pause', autoResume: false } });
    expect((await sbx.getInfo()).lifecycle).toEqual({ onTimeout: 'pause', autoResume: false });
    await eventually(async () => (await sbx.getInfo()).state === 'paused');
    expect(await sbx.isRunning()).toBe(false);
    await wait(500);
    expect(await sbx.isRunning()).toBe(false); // no traffic wakes it without autoResume
    await sbx.connect();
    expect((await sbx.getInfo()).state).toBe('running');
    expect(await sbx.isRunning()).toBe(true);
  });

  it('a filesystem-only auto-pause reboots on connect', async () => {
    const sbx = await create({
      timeoutMs: 3_000,
      lifecycle: { onTimeout: { action: 'pause', keepMemory: false } },
    });
    await sbx.files.write('/home/user/marker.txt', 'marker');
    const boot = await bootId(sbx);
    await eventually(async () => (await sbx.getInfo()).state === 'paused');
    await sbx.connect();
    expect(await sbx.files.read('/home/user/marker.txt')).toBe('marker');
    expect(await bootId(sbx)).not.toBe(boot);
  });

  it('autoResume wakes a paused sandbox on traffic', async () => {
    const sbx = await create({ timeoutMs: 3_000, lifecycle: { onTimeout: 'pause', autoResume: true } });
    await startServer(sbx);
    await eventually(async () => (await sbx.getInfo()).state === 'paused');
    expect((await port(sbx, 8000)).status).toBe(200);
    expect((await sbx.getInfo()).state).toBe('running');
  });

  it('paused sandboxes survive a restart of Cove', async () => {
    const frozen = await create();
    const onDisk = await create();
    // crun: frozen in place, and its processes gone with the host (a reboot); microvm: its
    // memory pause is a saved VM on disk (src/runtime/microvm), which no reboot loses.
    const lost = await create();
    const sleeper = await frozen.commands.run('sleep 3600', { background: true });
    await frozen.files.write('/home/user/a.txt', 'frozen');
    await onDisk.files.write('/home/user/b.txt', 'on disk');
    await lost.files.write('/home/user/c.txt', 'lost memory');
    const lostBoot = await bootId(lost);
    await frozen.pause();
    await onDisk.pause({ keepMemory: false });
    await lost.pause();

    await cove.close();
    const { instance, crunRoot } = cove.config;
    if (!memoryOnDisk) {
      writeFileSync(`/sys/fs/cgroup/freezer/${instance}/${lost.sandboxId}/freezer.state`, 'THAWED');
      execFileSync('crun', ['--root', crunRoot, 'delete', '--force', lost.sandboxId]);
    }
    cove = await startTestCove(cove.config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    expect(cove.reconciled.adopted).toEqual(expect.arrayContaining([frozen.sandboxId, onDisk.sandboxId]));

    const paused = (await Sandbox.list({ query: { state: ['paused'] } }).nextItems()).map((s) => s.sandboxId);
    expect(paused).toEqual(expect.arrayContaining([frozen.sandboxId, onDisk.sandboxId]));
    const a = await Sandbox.connect(frozen.sandboxId);
    const b = await Sandbox.connect(onDisk.sandboxId);
    expect(await a.files.read('/home/user/a.txt')).toBe('frozen');
    expect(await b.files.read('/home/user/b.txt')).toBe('on disk');
    expect((await a.commands.list()).map((p) => p.pid)).toContain(sleeper.pid);
    expect((await Sandbox.getInfo(lost.sandboxId)).state).toBe('paused');
    const c = await Sandbox.connect(lost.sandboxId); // handles made before the restart name the old URL
    expect(await c.files.read('/home/user/c.txt')).toBe('lost memory');
    if (memoryOnDisk) expect(await bootId(c)).toBe(lostBoot);
    else expect(await bootId(c)).not.toBe(lostBoot);
  });
});
