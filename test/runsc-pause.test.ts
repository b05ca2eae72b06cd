import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig, runscInstalled } from './helpers.ts';
import { KEEPALIVE_SERVER } from './keepalive-server.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type Sandbox = InstanceType<E2b['Sandbox']>;

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Pause and resume with memory on gVisor through the unmodified SDK: the manager picks the
 * runtime's 'checkpoint-memory' (a runsc checkpoint image) over the crun freeze, so what runs
 * in the sandbox survives its processes being stopped altogether: files, env, processes with
 * their pids and a listening server. A sandbox gVisor cannot save (a Node server: epoll on a
 * TCP socket) is paused with its files only, never killed (docs/runtimes.md).
 */
describe.skipIf(!canRunSandboxes || !runscInstalled)('pause and resume with memory on gVisor', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ runtime: 'runsc' }));
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const create = (envs: Record<string, string> = {}) =>
    e2b.Sandbox.create('base', { timeoutMs: 300_000, envs, metadata: { test: randomUUID() } });

  /** One request through the gateway by headers; the gateway resets its pool at pause. */
  const port = (sbx: Sandbox, p: number) =>
    fetch(cove.url, { headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(p) } }).then(
      async (r) => ({ status: r.status, body: await r.text() }),
      () => ({ status: 0, body: '' }),
    );

  async function until(check: () => Promise<boolean>): Promise<void> {
    for (let i = 0; !(await check()); i++) {
      if (i > 300) throw new Error('condition not met in time');
      await wait(100);
    }
  }

  it('keeps files, env, processes with their pids and a poll-based server across pause and resume', async () => {
    const sbx = await create({ TEST_VAR: 'kept-in-memory' });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    const sleeper = await sbx.commands.run('sleep 3600', { background: true });
    // A server that waits with poll() (socketserver), which this gVisor can save (Node's epoll
    // it cannot), and lets the client close first: a server that closes first leaves a
    // TIME_WAIT in the sandbox for 60 s, which gVisor cannot save either (docs/runtimes.md).
    await sbx.files.write('/home/user/server.py', KEEPALIVE_SERVER);
    const server = await sbx.commands.run('python3 /home/user/server.py', { background: true });
    await until(async () => (await port(sbx, 8000)).status === 200);
    const bootId = async (s: InstanceType<E2b['Sandbox']>) =>
      (await s.commands.run('cat /proc/sys/kernel/random/boot_id')).stdout.trim();
    const boot = await bootId(sbx); // Cove's file: gVisor has none of its own
    expect(boot).toMatch(/^[0-9a-f-]{36}$/);

    expect(await sbx.pause()).toBe(true);
    expect((await sbx.getInfo()).state).toBe('paused');
    expect((await port(sbx, 8000)).status).toBe(502);

    const resumed = await e2b.Sandbox.connect(sbx.sandboxId);
    expect((await resumed.getInfo()).state).toBe('running');
    expect(await resumed.files.read('/home/user/kept.txt')).toBe('kept');
    expect((await resumed.commands.run('echo "$TEST_VAR"')).stdout.trim()).toBe('kept-in-memory');
    const pids = (await resumed.commands.list()).map((p) => p.pid);
    expect(pids).toContain(sleeper.pid); // the same processes: restored, not restarted
    expect(pids).toContain(server.pid);
    expect((await port(resumed, 8000)).status).toBe(200);
    expect(await bootId(resumed)).toBe(boot); // restored, not booted
    // and it pauses again, after the gateway's connections to the server were used
    expect(await resumed.pause()).toBe(true);
    const again = await e2b.Sandbox.connect(sbx.sandboxId);
    expect((await again.commands.list()).map((p) => p.pid)).toContain(sleeper.pid);
    // a filesystem-only pause boots it again: a new boot id
    expect(await again.pause({ keepMemory: false })).toBe(true);
    const booted = await e2b.Sandbox.connect(sbx.sandboxId);
    expect(await bootId(booted)).not.toBe(boot);
    await booted.kill();
  });

  it('pauses a sandbox gVisor cannot save (a Node server) with its files, and it lives on after resume', async () => {
    const sbx = await create();
    await sbx.files.write('/home/user/still.txt', 'here');
    const node = "require('http').createServer((q, s) => s.end('node')).listen(8081, '0.0.0.0')";
    const server = await sbx.commands.run(`node -e "${node}"`, { background: true });
    await until(async () => (await port(sbx, 8081)).body === 'node');

    expect(await sbx.pause()).toBe(true);
    const resumed = await e2b.Sandbox.connect(sbx.sandboxId);
    expect(await resumed.files.read('/home/user/still.txt')).toBe('here');
    // files only: the server did not come back, the sandbox answers commands
    expect((await resumed.commands.list()).map((p) => p.pid)).not.toContain(server.pid);
    expect((await resumed.commands.run('echo alive')).stdout).toBe('alive\n');
    await resumed.kill();
  });
});
