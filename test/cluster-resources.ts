import { randomBytes } from 'node:crypto';
import { expect, it } from 'vitest';
import type { ClusterStore } from '../src/cluster/store.ts';

/** What cluster.test.ts shares with these cases (they run inside its describe, on its cluster). */
export interface ClusterContext {
  ready(): boolean;
  store(): ClusterStore;
  /** Points the SDK at API replica `i`; returns its URL. */
  useApi(i: number): string;
}

/**
 * Volumes, snapshots, signed /files URLs and template builds through `cove api`, with the
 * unmodified SDK, each call through either replica (src/cluster/resources.ts).
 */
export function resourceCases(ctx: ClusterContext): void {
  const placedOn = async (id: string) => (await ctx.store().getPlacement(id))?.node;

  it('volumes: made on one node, their content API through a replica, mounts placed on their node', async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox, Volume } = await import('e2b');
    ctx.useApi(0);
    const vol = await Volume.create(`vol-${randomBytes(3).toString('hex')}`);
    await vol.writeFile('/hello.txt', 'from the content API');
    const home = (await ctx.store().getHome('volume', vol.volumeId))?.node;
    expect(home).toMatch(/^n\d$/);
    ctx.useApi(1);
    expect((await Volume.list()).map((v) => v.volumeId)).toContain(vol.volumeId);
    // Creates through the other replica: every one lands on the volume's node.
    const sandboxes = [];
    for (let i = 0; i < 2; i++)
      sandboxes.push(await Sandbox.create('base', { volumeMounts: { '/mnt/data': vol }, timeoutMs: 60_000 }));
    for (const sbx of sandboxes) {
      expect(await placedOn(sbx.sandboxId)).toBe(home);
      expect((await sbx.commands.run('cat /mnt/data/hello.txt')).stdout).toBe('from the content API');
    }
    await sandboxes[0]!.files.write('/mnt/data/back.txt', 'from a sandbox');
    ctx.useApi(0);
    expect(await vol.readFile('/back.txt')).toBe('from a sandbox');
    for (const sbx of sandboxes) await sbx.kill();
    // Deleted through either replica; its records go with it. (A mount's teardown follows the kill's answer.)
    await until(async () => (await Volume.destroy(vol.volumeId).catch(() => false)) === true, 15_000);
    expect(await ctx.store().getHome('volume', vol.volumeId)).toBeUndefined();
    expect((await Volume.list()).map((v) => v.volumeId)).not.toContain(vol.volumeId);
  });

  it('snapshots: a create from one runs on its node; listed and deleted through a replica', async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox } = await import('e2b');
    ctx.useApi(0);
    const sbx = await Sandbox.create('base', { timeoutMs: 60_000 });
    await sbx.files.write('/home/user/kept.txt', 'in the snapshot');
    const snapshot = await sbx.createSnapshot();
    const node = await placedOn(sbx.sandboxId);
    expect((await ctx.store().getHome('snapshot', snapshot.snapshotId))?.node).toBe(node);
    ctx.useApi(1);
    const from = await Sandbox.create(snapshot.snapshotId, { timeoutMs: 60_000 });
    expect(await placedOn(from.sandboxId)).toBe(node);
    expect(await from.files.read('/home/user/kept.txt')).toBe('in the snapshot');
    const listed = (await Sandbox.listSnapshots().nextItems()).map((s) => s.snapshotId);
    expect(listed).toEqual([snapshot.snapshotId]);
    await from.kill();
    await sbx.kill();
    expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
    expect(await ctx.store().getHome('snapshot', snapshot.snapshotId)).toBeUndefined();
  });

  it('signed /files URLs reach the sandbox through a replica that never saw it made', async ({ skip }) => {
    if (!ctx.ready()) skip();
    const { Sandbox } = await import('e2b');
    ctx.useApi(0);
    const sbx = await Sandbox.create('base', { timeoutMs: 60_000 });
    ctx.useApi(1);
    const again = await Sandbox.connect(sbx.sandboxId);
    const form = new FormData();
    form.append('file', 'uploaded by URL');
    const up = await fetch(await again.uploadUrl('up.txt', { useSignatureExpiration: 10_000 }), {
      method: 'POST',
      body: form,
    });
    expect(up.status).toBe(200);
    const down = await fetch(await again.downloadUrl('up.txt', { useSignatureExpiration: 10_000 }));
    expect(await down.text()).toBe('uploaded by URL');
    // A signature no running sandbox's token makes: refused at the replica.
    const forged = new URL(await again.downloadUrl('up.txt'));
    forged.searchParams.set('signature', `v1_${'0'.repeat(64)}`);
    expect((await fetch(forged)).status).toBe(401);
    await sbx.kill();
  });

  it('template builds run on a node, through either replica, and any node runs the result', async ({
    skip,
  }) => {
    if (!ctx.ready()) skip();
    const { Sandbox, Template } = await import('e2b');
    const name = `cl-${randomBytes(3).toString('hex')}`;
    ctx.useApi(1);
    await Template.build(Template().fromTemplate('base').runCmd('echo built-here > /tmp/built.txt'), name);
    ctx.useApi(0);
    const sbx = await Sandbox.create(name, { timeoutMs: 60_000 });
    expect((await sbx.commands.run('cat /tmp/built.txt')).stdout).toBe('built-here\n');
    await sbx.kill();
    expect(await Template.exists(name)).toBe(true);
  });
}

export async function until<T>(
  fn: () => Promise<T | undefined | false> | T | undefined | false,
  ms: number,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await fn();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
