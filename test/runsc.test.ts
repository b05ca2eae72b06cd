import { release } from 'node:os';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import {
  canRunSandboxes,
  hostLeftovers,
  startTestCove,
  stopTestCove,
  testConfig,
  runscInstalled,
} from './helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

if (canRunSandboxes && !runscInstalled && process.env.CI === 'true')
  throw new Error('runsc is missing: scripts/setup.sh installs it');

/**
 * A Cove whose default runtime is gVisor (`cove serve --runtime runsc`), through the real SDK:
 * the sandbox runs on gVisor's kernel, commands, files and the agent's identity rules work as
 * on crun, servers inside answer through the gateway, a restart adopts the sandbox, and kill
 * leaves nothing (docs/runtimes.md).
 */
describe.skipIf(!canRunSandboxes || !runscInstalled)('sandboxes on gVisor (runsc)', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let e2b: E2b;
  let sbx: InstanceType<E2b['Sandbox']>;
  const config = testConfig({ runtime: 'runsc' });

  beforeAll(async () => {
    cove = await startTestCove(config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base', { envs: { GREETING: 'hi' } });
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const api = async (path: string) =>
    (await (
      await fetch(new URL(path, cove.url), { headers: { 'X-API-Key': cove.apiKey } })
    ).json()) as Record<string, unknown>;

  it('runs on gVisor’s kernel, and get-info and list say runsc', async () => {
    const r = await sbx.commands.run('uname -r; dmesg | head -1');
    expect(r.stdout.split('\n')[0]).not.toBe(release()); // not the host's kernel
    expect(r.stdout).toMatch(/gVisor|Starting/i);
    expect(await api(`/sandboxes/${sbx.sandboxId}`)).toMatchObject({ runtime: 'runsc' });
    const listed = (await api('/v2/sandboxes')) as unknown as Array<Record<string, unknown>>;
    expect(listed.find((s) => s.sandboxID === sbx.sandboxId)).toMatchObject({ runtime: 'runsc' });
  });

  it('runs commands with env, as the template user or root', async () => {
    const r = await sbx.commands.run('echo $GREETING $(id -un) $HOME');
    expect(r.stdout).toBe('hi user /home/user\n');
    expect((await sbx.commands.run('id -u', { user: 'root' })).stdout).toBe('0\n');
    // Debian 12's coreutils pass AT_NO_AUTOMOUNT to statx, which this gVisor refuses: the shim
    await expect(sbx.commands.run('ls -l /etc/passwd && stat -c %U /home/user')).resolves.toMatchObject({
      exitCode: 0,
      stdout: expect.stringMatching(/passwd\nuser\n$/) as unknown,
    });
  });

  it('reads and writes files with the caller’s identity (no setfsuid in gVisor)', async () => {
    await sbx.files.write('/home/user/mine.txt', 'hello');
    expect(await sbx.files.read('/home/user/mine.txt')).toBe('hello');
    const owner = await sbx.commands.run('stat -c %U:%G /home/user/mine.txt');
    expect(owner.stdout).toBe('user:user\n');
    // a command as the user is refused root's files: permissions are checked as the user's
    const denied = await sbx.commands.run('cat /root/.bashrc').catch((e: { exitCode: number }) => e);
    expect(denied.exitCode).not.toBe(0);
  });

  it('serves a port through the gateway from gVisor’s network stack', async () => {
    const server = "require('http').createServer((q, s) => s.end('from gvisor')).listen(8080, '0.0.0.0')";
    await sbx.commands.run(`node -e "${server}"`, { background: true });
    let body = '';
    for (let i = 0; i < 100 && body !== 'from gvisor'; i++) {
      const res = await fetch(cove.url, {
        headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8080', Connection: 'close' },
      });
      body = await res.text();
      if (body !== 'from gvisor') await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe('from gvisor');
  });

  it('is adopted by a restarted Cove, then killed without leftovers', async () => {
    await cove.close();
    cove = await startTestCove(config);
    expect(cove.reconciled.adopted).toContain(sbx.sandboxId);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    const again = await e2b.Sandbox.connect(sbx.sandboxId);
    expect((await again.commands.run('cat /home/user/mine.txt')).stdout).toBe('hello');
    await again.kill();
    // kill answers once the sandbox is unreachable; its teardown ends just after (manager.ts)
    await vi.waitFor(
      () =>
        expect(hostLeftovers(config.instance, config.home).filter((l) => l.includes(sbx.sandboxId))).toEqual(
          [],
        ),
      { timeout: 20_000, interval: 100 },
    );
  });
});
