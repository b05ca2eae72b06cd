import { Sandbox, SandboxNotFoundError } from 'e2b';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, hostLeftovers, startTestCove, stopTestCove } from './helpers.ts';

/**
 * The API's kill answers once the sandbox is unreachable and tears it down after the reply
 * (issue 5: cleanup off the request path). What the caller sees must not change: gone from
 * the API at once, its host objects gone shortly after, nothing left when Cove stops.
 */
describe.skipIf(!canRunSandboxes)('kill through the API', () => {
  let cove: Cove & { config: Config; apiKey: string };
  const leftoversOf = (id: string) =>
    hostLeftovers(cove.config.instance, cove.config.home).filter((l) => l.includes(id));

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('is gone from the API when kill returns, and from the host soon after', async () => {
    const sbx = await Sandbox.create('base', { timeoutMs: 60_000 });
    const id = sbx.sandboxId;
    const running = sbx.commands.run('sleep 30', { background: true });
    await running;
    expect(leftoversOf(id).length).toBeGreaterThan(0); // its netns, veth, mounts exist now
    expect(await sbx.kill()).toBe(true);
    expect(await sbx.isRunning()).toBe(false);
    await expect(Sandbox.getInfo(id)).rejects.toBeInstanceOf(SandboxNotFoundError);
    expect((await Sandbox.list().nextItems()).map((s) => s.sandboxId)).not.toContain(id);
    await expect(sbx.commands.run('true')).rejects.toThrow();
    expect(await Sandbox.kill(id)).toBe(false); // a second kill: not found
    await vi.waitFor(() => expect(leftoversOf(id)).toEqual([]), { timeout: 20_000, interval: 100 });
  });

  it('leaves nothing when Cove stops right after a kill (close waits for the teardown)', async () => {
    const sbxs = await Promise.all([1, 2, 3].map(() => Sandbox.create('base', { timeoutMs: 60_000 })));
    await Promise.all(sbxs.map((s) => s.kill()));
    const stopped = cove;
    cove = undefined as unknown as typeof cove;
    expect(await stopTestCove(stopped)).toEqual([]);
  });
});
