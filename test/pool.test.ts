import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import {
  canRunSandboxes,
  cli,
  hostLeftovers,
  sh,
  spawnServer,
  startTestCove,
  stopTestCove,
  testConfig,
} from './helpers.ts';

const pool = { min: 2, max: 4, budget: 6, templates: ['base'], idleShrinkMs: 60_000 };

describe.skipIf(!canRunSandboxes)('warm pools', () => {
  let cove: Cove & { config: Config };

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ pool }));
    await cove.manager.pool.settled();
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('keeps pooled sandboxes out of sight until a create claims one', () => {
    expect(cove.manager.pool.stats()).toEqual({ base: { ready: 2, target: 2 } });
    expect(cove.manager.list()).toEqual([]);
    // they exist on the host all the same: a netns each
    expect(
      hostLeftovers(cove.config.instance, cove.config.home).filter((l) => l.startsWith('netns')),
    ).toHaveLength(2);
  });

  it('claims a fresh sandbox with the create call’s env, metadata, timeout and token', async () => {
    const before = Date.now();
    const a = await cove.manager.create({
      template: 'base',
      timeoutMs: 120_000,
      metadata: { tenant: 'a' },
      envVars: { TENANT: 'a' },
      secure: true,
    });
    expect(a.metadata).toEqual({ tenant: 'a' });
    expect(a.envdAccessToken).toMatch(/^[0-9a-f]{64}$/);
    expect(a.startedAt.getTime()).toBeGreaterThanOrEqual(before);
    expect(a.endAt.getTime() - a.startedAt.getTime()).toBe(120_000);
    expect((await sh(cove.manager, a.id, 'echo $TENANT; hostname; ls /tmp | wc -l')).stdout).toBe(
      `a\n${a.id}\n0\n`,
    );
    expect(cove.manager.list().map((s) => s.id)).toEqual([a.id]);

    // A second tenant gets another sandbox, never the first one's state.
    await sh(cove.manager, a.id, 'echo secret > /tmp/left-behind');
    await cove.manager.kill(a.id);
    const b = await cove.manager.create({ template: 'base', timeoutMs: 60_000 });
    expect(b.id).not.toBe(a.id);
    expect((await sh(cove.manager, b.id, 'ls /tmp; echo "[$TENANT]"')).stdout).toBe('[]\n');
    expect(b.envdAccessToken).toBeUndefined();
    await cove.manager.kill(b.id);
  });

  it('refills after claims, and grows when creates outrun it', async () => {
    const burst = await Promise.all(
      Array.from({ length: 5 }, () => cove.manager.create({ template: 'base', timeoutMs: 60_000 })),
    );
    expect(new Set(burst.map((s) => s.id)).size).toBe(5);
    await cove.manager.pool.settled();
    const stats = cove.manager.pool.stats().base!;
    expect(stats.target).toBeGreaterThan(2);
    expect(stats.ready).toBe(stats.target);
    await Promise.all(burst.map((s) => cove.manager.kill(s.id)));
    expect(cove.manager.list()).toEqual([]);
  });
});

describe.skipIf(!canRunSandboxes)('warm pools after a crash', () => {
  let server: { child: ChildProcess; url: string } | undefined;
  afterAll(() => server?.child.kill('SIGKILL'));

  it('removes pooled sandboxes nobody claimed', async () => {
    const config = testConfig({ pool });
    server = await spawnServer(config);
    const id = cli(server.url, ['sandbox', 'create', '--timeout', '60']).stdout.trim();
    // give the filler time to refill after the claim, then crash
    await new Promise((r) => setTimeout(r, 1500));
    server.child.kill('SIGKILL');
    await new Promise((r) => server!.child.once('exit', r));
    server = await spawnServer({ ...config, pool: { ...pool, min: 0, max: 0 } });
    expect(cli(server.url, ['sandbox', 'list']).stdout).toContain(id);
    expect(cli(server.url, ['sandbox', 'kill', id]).status).toBe(0);
    // kill answers once the sandbox is unreachable; its teardown ends just after (manager.ts)
    await vi.waitFor(() => expect(hostLeftovers(config.instance, config.home)).toEqual([]), {
      timeout: 20_000,
      interval: 100,
    });
    server.child.kill('SIGTERM');
  });
});
