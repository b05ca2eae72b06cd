import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  canRunSandboxes,
  pointSdkAt,
  runscInstalled,
  startTestCove,
  stopTestCove,
  testConfig,
} from './helpers.ts';

const loadE2b = () => import('e2b');

/** Host processes whose command line names the sandbox (gVisor's sandbox and gofer name it). */
function processesOf(id: string): number[] {
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(id);
      } catch {
        return false; // gone meanwhile
      }
    })
    .map(Number);
}

/** What a gVisor sandbox leaves when paused, and what a crash of Cove leaves of one. */
describe.skipIf(!canRunSandboxes || !runscInstalled)('gVisor sandboxes across pauses and restarts', () => {
  const config = testConfig({ runtime: 'runsc' });
  let cove: Awaited<ReturnType<typeof startTestCove>> | undefined;
  let e2b: Awaited<ReturnType<typeof loadE2b>>;

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
    e2b = await loadE2b();
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  /**
   * A paused gVisor sandbox costs the host nothing: its memory is in a checkpoint image and no
   * process of it stays (so nothing of it can spend CPU, e.g. the agent, which while quiesced
   * for the checkpoint looks for its `listen` file every 5 ms: agent/src/loop.c). Measured
   * 2026-11-26: 0 processes and 0 ms of CPU over 10 s paused; 0-20 ms over 10 s running idle;
   * 900 ms over 10 s with the agent held quiesced by hand (the poll's cost, for that window only).
   */
  it('a paused one leaves no process on the host until it is resumed', async () => {
    const sbx = await e2b.Sandbox.create('base', { timeoutMs: 120_000 });
    try {
      expect(processesOf(sbx.sandboxId).length).toBeGreaterThan(0);
      expect(await sbx.pause()).toBe(true);
      // the checkpointed sandbox process exits by itself, maybe just after the pause returns
      await expect.poll(() => processesOf(sbx.sandboxId), { timeout: 20_000 }).toEqual([]);
      const resumed = await e2b.Sandbox.connect(sbx.sandboxId);
      expect((await resumed.commands.run('echo back')).stdout.trim()).toBe('back');
      expect(processesOf(sbx.sandboxId).length).toBeGreaterThan(0);
    } finally {
      await e2b.Sandbox.kill(sbx.sandboxId);
    }
  });

  /**
   * Before a checkpoint (a fork with memory, a snapshot) Cove has the agent close its socket
   * (SIGUSR2, agent/src/loop.c). A Cove that dies right then leaves the sandbox running with an
   * agent nobody can reach: the next start has it listen again and adopts the sandbox, rather
   * than taking it for dead and killing it. The crash is stood in for by stopping Cove (its
   * sandboxes keep running) and quiescing the agent by hand.
   */
  it('one whose agent had closed its socket for a checkpoint is adopted after a restart', async () => {
    const sbx = await e2b.Sandbox.create('base', { timeoutMs: 120_000 });
    await sbx.files.write('/home/user/kept.txt', 'kept');
    await cove!.close();
    cove = undefined;
    const socket = join(config.home, 'sandboxes', sbx.sandboxId, 'run', 'agent.sock');
    expect(existsSync(socket)).toBe(true);
    execFileSync('runsc', ['--root', `/run/${config.instance}/runsc`, 'kill', sbx.sandboxId, 'USR2']);
    await expect.poll(() => existsSync(socket), { timeout: 10_000 }).toBe(false);

    cove = await startTestCove(config);
    pointSdkAt(cove);
    expect(cove.manager.list().map((s) => s.id)).toContain(sbx.sandboxId);
    const back = await e2b.Sandbox.connect(sbx.sandboxId);
    expect(await back.files.read('/home/user/kept.txt')).toBe('kept');
    expect((await back.commands.run('echo adopted')).stdout.trim()).toBe('adopted');
    await back.kill();
  });
});
