import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  canRunSandboxes,
  hostLeftovers,
  pointSdkAt,
  startTestCove,
  stopTestCove,
  testConfig,
} from './helpers.ts';
import { microvmReady } from './microvm-host.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

const pool = { min: 1, max: 1, budget: 1, templates: ['base'], idleShrinkMs: 600_000 };
const config = testConfig({ runtime: 'microvm', pool });
const qemuInstalled = microvmReady(config);

/** The QEMU process that runs sandbox `id`'s VM, if it runs (its state directory names it). */
function qemuOf(id: string): number | undefined {
  try {
    const pid = Number(readFileSync(join(config.microvm.stateRoot, id, 'pid'), 'utf8'));
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('qemu-system') ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Whether process `pid` runs (a zombie does not: QEMU was this process's child before the restart). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^ Z /.test(stat.slice(stat.lastIndexOf(')') + 1));
  } catch {
    return false;
  }
}

/**
 * Warm pools and restarts on the microvm backend, through the SDK (TCG here): a pooled VM is
 * a restored clone of its template's saved VM, handed out with the create's env and metadata,
 * never a previous tenant's; the pool refills; a restarted Cove adopts running VMs through
 * their QMP sockets, and kill then leaves no QEMU process, tap (in the sandbox's namespace)
 * or disk.
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)('warm pools and restarts of microVMs', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  const pooled: string[] = [];

  const start = async () => {
    cove = await startTestCove(config);
    cove.manager.events.on('created', (e) => void (e.pooled && pooled.push(e.id)));
    pointSdkAt(cove);
    await cove.manager.pool.settled();
  };

  beforeAll(async () => {
    await start();
    e2b = await loadE2b();
  }, 600_000);

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('hands out a pooled clone with the create’s env and metadata, fresh for each tenant, and refills', async () => {
    expect(cove.manager.pool.stats()).toEqual({ base: { ready: 1, target: 1 } });
    const a = await e2b.Sandbox.create('base', {
      envs: { TENANT: 'a' },
      metadata: { tenant: 'a' },
      timeoutMs: 600_000,
    });
    expect(pooled).toEqual([a.sandboxId]);
    expect((await a.getInfo()).metadata).toEqual({ tenant: 'a' });
    const probe = 'echo "[$TENANT]"; hostname; ls /tmp /home/user | grep -c left-behind || true; uname -r';
    const [tenant, hostname, left, kernel] = (await a.commands.run(probe)).stdout.split('\n');
    expect([tenant, hostname, left]).toEqual(['[a]', a.sandboxId, '0']);
    expect(kernel).toMatch(/cloud-amd64/);
    await a.files.write('/home/user/left-behind', 'tenant a');
    await a.commands.run('echo secret > /tmp/left-behind; sleep 3600 &', { background: true });
    await a.kill();

    await vi.waitFor(() => expect(cove.manager.pool.stats().base?.ready).toBe(1), {
      timeout: 300_000,
      interval: 500,
    });
    const b = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
    expect(pooled).toEqual([a.sandboxId, b.sandboxId]);
    const r = await b.commands.run(probe);
    expect(r.stdout.split('\n').slice(0, 3)).toEqual(['[]', b.sandboxId, '0']);
    expect((await b.getInfo()).metadata).toEqual({});
    expect(await b.commands.list()).toEqual([]);
    await b.kill();
  });

  it('a restarted Cove adopts a running VM; kill then leaves no QEMU, tap or disk', async () => {
    const sbx = await e2b.Sandbox.create('base', { timeoutMs: 600_000 });
    await sbx.files.write('/home/user/kept.txt', 'across the restart');
    const pid = (await sbx.commands.run('sleep 3600', { background: true })).pid;
    await cove.close(); // the pooled VM goes, the claimed one runs on without Cove
    const qemu = qemuOf(sbx.sandboxId);
    expect(qemu).toBeGreaterThan(0);

    await start();
    const again = await e2b.Sandbox.connect(sbx.sandboxId, { timeoutMs: 600_000 });
    expect(await again.files.read('/home/user/kept.txt')).toBe('across the restart');
    expect((await again.commands.list()).map((p) => p.pid)).toContain(pid);
    const dir = join(config.home, 'sandboxes', sbx.sandboxId);
    await again.kill();
    await vi.waitFor(
      () => {
        expect(existsSync(dir)).toBe(false);
        expect(existsSync(join(config.microvm.stateRoot, sbx.sandboxId))).toBe(false);
        expect(readdirSync('/run/netns').filter((n) => n.includes(sbx.sandboxId))).toEqual([]);
        expect(qemuOf(sbx.sandboxId) ?? alive(qemu!)).toBe(false);
      },
      { timeout: 20_000, interval: 100 },
    );
    // What is left is the pool's VM alone; stopTestCove (afterAll) checks that it goes too.
    const left = hostLeftovers(config.instance, config.home).filter((l) => l.startsWith('microvm '));
    expect(left).toHaveLength(1);
  });
});
