import { expect, it } from 'vitest';
import { testApiKey } from './helpers.ts';
import { runCli } from './cluster-hosts.ts';
import { until, type ClusterContext } from './cluster-resources.ts';

/**
 * `cove node drain` (src/cluster/cli.ts → POST /cluster/v1/nodes/<name>/drain): the node takes
 * no new sandboxes, whatever its heartbeats say, while those it runs go on answering; once they
 * end it is empty; `undrain` lets it take sandboxes again. Runs inside cluster.test.ts.
 */
export function drainCases(ctx: ClusterContext & { api: number }): void {
  it('a drained node takes no new sandboxes, its own keep running until they end, and undrain undoes it', async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox } = await import('e2b');
    const store = ctx.store();
    const url = ctx.useApi(ctx.api);
    const env = { COVE_URL: url, COVE_API_KEY: testApiKey };
    // The node of a fresh sandbox is drained, to see that sandbox outlive the drain.
    const kept = await Sandbox.create('base', { timeoutMs: 120_000 });
    const name = (await store.getPlacement(kept.sandboxId))!.node;
    expect(runCli(['node', 'drain', name], env)).toMatch(
      new RegExp(`node ${name} is draining.* [1-9]\\d* still run there`),
    );
    // Heartbeats (every 500 ms) do not undo it.
    await new Promise((r) => setTimeout(r, 1_500));
    expect((await store.getNode(name))?.state).toBe('draining');
    expect(runCli(['node', 'list'], env)).toMatch(new RegExp(`^${name}\tdraining\t`, 'm'));
    const fresh = [];
    for (let i = 0; i < 4; i++) fresh.push(await Sandbox.create('base', { timeoutMs: 60_000 }));
    for (const s of fresh) expect((await store.getPlacement(s.sandboxId))?.node).not.toBe(name);
    expect((await kept.commands.run('echo still here')).stdout).toBe('still here\n');
    // Its sandboxes end (here: killed; a timeout ends them alike): the node is empty.
    for (const p of await store.listPlacements(name)) await Sandbox.kill(p.id);
    await until(async () => (await store.listPlacements(name)).length === 0, 10_000);
    for (const s of fresh) await s.kill();
    expect(runCli(['node', 'undrain', name], env)).toMatch(/takes sandboxes again/);
    await until(async () => (await store.getNode(name))?.state === 'up', 5_000);
    await expect(
      fetch(`${url}/cluster/v1/nodes/nope/drain`, {
        method: 'POST',
        headers: { 'x-api-key': testApiKey },
      }).then((r) => r.status),
    ).resolves.toBe(404);
  });
}
