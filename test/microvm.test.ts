import { existsSync, readdirSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, hostLeftovers, startTestCove, stopTestCove, testConfig } from './helpers.ts';
import { microvmReady } from './microvm-host.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

const config = testConfig({ runtime: 'microvm' });
const qemuInstalled = microvmReady(config);

/**
 * A Cove whose default runtime is the QEMU microVM (`cove serve --runtime microvm`), through
 * the real SDK, under whatever accelerator the host has (software emulation on the project's
 * machines, hence one sandbox for the whole file): its own kernel, commands and files, its
 * address on the bridge, and kill leaves no QEMU, tap, disk or state behind.
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('sandboxes in QEMU microVMs', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let e2b: E2b;
  let sbx: InstanceType<E2b['Sandbox']>;

  beforeAll(async () => {
    cove = await startTestCove(config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base', { envs: { GREETING: 'hi' }, timeoutMs: 600_000 });
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('runs on its own kernel, and get-info says microvm', async () => {
    const r = await sbx.commands.run('uname -r; echo $GREETING; whoami');
    const [kernel, greeting, user] = r.stdout.split('\n');
    expect(kernel).not.toBe(release());
    expect(kernel).toMatch(/cloud-amd64/);
    expect(greeting).toBe('hi');
    expect(user).toBe('user');
    const info = (await (
      await fetch(new URL(`/sandboxes/${sbx.sandboxId}`, cove.url), { headers: { 'X-API-Key': cove.apiKey } })
    ).json()) as Record<string, unknown>;
    expect(info).toMatchObject({ runtime: 'microvm' });
  });

  it('writes and reads files, as the template user, on its own disk', async () => {
    await sbx.files.write('/home/user/www/index.html', 'from the host');
    expect(await sbx.files.read('/home/user/www/index.html')).toBe('from the host');
    const r = await sbx.commands.run('stat -c %U /home/user/www/index.html; findmnt -no SOURCE /');
    expect(r.stdout.split('\n').slice(0, 2)).toEqual(['user', '/dev/vda']);
  });

  it('serves a server inside through the gateway, at the sandbox address', async () => {
    await sbx.commands.run('cd /home/user/www && python3 -m http.server 8000', { background: true });
    const viaHeaders = () =>
      fetch(new URL('/index.html', cove.url), {
        headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8000' },
      });
    let res = await viaHeaders();
    for (let i = 0; i < 300 && res.status === 502; i++) {
      await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 200));
      res = await viaHeaders();
    }
    expect(await res.text()).toBe('from the host');
  });

  it('clones the template saved VM: its own name, address, clock, randomness and boot_id', async () => {
    const other = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
    try {
      const probe =
        'cat /proc/cmdline; hostname; ip -4 -o addr show eth0; date +%s; cat /proc/sys/kernel/random/boot_id; head -c 16 /dev/urandom | od -An -tx1';
      const [a, b] = await Promise.all([sbx.commands.run(probe), other.commands.run(probe)]);
      const lines = (r: { stdout: string }) => r.stdout.trim().split('\n');
      for (const [r, s] of [
        [a, sbx],
        [b, other],
      ] as const) {
        const [cmdline, hostname, addr, date] = lines(r);
        expect(cmdline).toContain('cove.host=cove'); // the saved VM's boot, not a boot of its own
        expect(hostname).toBe(s.sandboxId);
        expect(addr).toContain(` ${cove.manager.get(s.sandboxId).address}/`);
        expect(Math.abs(Number(date) - Date.now() / 1000)).toBeLessThan(30);
      }
      expect(lines(a).at(-1)).not.toBe(lines(b).at(-1));
      // Its own boot_id: the kernel makes it at the first read, after the identity step's reseed.
      expect(lines(a)[4]).toMatch(/^[0-9a-f-]{36}$/);
      expect(lines(a)[4]).not.toBe(lines(b)[4]);
      expect(lines(a)[2]).not.toBe(lines(b)[2]);
    } finally {
      await other.kill();
    }
  });

  it('kill leaves no QEMU process, tap or disk', async () => {
    const dir = join(cove.config.home, 'sandboxes', sbx.sandboxId);
    expect(existsSync(join(dir, 'disk.qcow2'))).toBe(true);
    await sbx.kill();
    // kill answers once the sandbox is unreachable; its teardown ends just after (manager.ts)
    await vi.waitFor(
      () => {
        expect(existsSync(dir)).toBe(false);
        expect(hostLeftovers(cove.config.instance, cove.config.home)).toEqual([]);
        expect(readdirSync('/run/netns').filter((n) => n.includes(sbx.sandboxId))).toEqual([]);
      },
      { timeout: 20_000, interval: 100 },
    );
  });
});
