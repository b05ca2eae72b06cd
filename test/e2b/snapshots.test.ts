import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RateLimitError, Sandbox, SandboxError, SandboxNotFoundError } from 'e2b';
import { canRunSandboxes, onRunsc, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

/** Points the SDK at `cove` (it reads these at every call). */
function useCove(cove: TestCove): void {
  process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
  process.env.E2B_API_KEY = cove.apiKey;
}

const create = (template = 'base') =>
  Sandbox.create(template, { timeoutMs: 120_000, metadata: { test: randomUUID() } });

/**
 * Snapshots (spec 2.14) and forks (2.10) through the unmodified SDK: a snapshot is a copy of
 * the sandbox's writable layer; sandboxes made from it, and forks, get their own copies.
 */
describe.skipIf(!canRunSandboxes)('snapshots and forks through the e2b SDK', () => {
  let cove: TestCove;

  beforeAll(async () => {
    cove = await startTestCove();
    useCove(cove);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('creates, lists by sandbox and name, builds independent sandboxes from, and deletes a snapshot', async () => {
    const sbx = await create();
    await sbx.files.makeDir('/home/user/app');
    await sbx.files.write('/home/user/app/config.json', '{"env":"test"}');
    await sbx.commands.run('rm /etc/debian_version', { user: 'root' }); // a whiteout in the layer
    const name = `snap-${randomUUID()}`;
    const snapshot = await sbx.createSnapshot({ name });
    expect(snapshot.names).toEqual([name]);
    expect(await sbx.isRunning()).toBe(true); // frozen for the copy only

    const ids = async (opts: Parameters<typeof Sandbox.listSnapshots>[0]) =>
      (await Sandbox.listSnapshots(opts).nextItems()).map((s) => s.snapshotId);
    expect(await ids({})).toContain(snapshot.snapshotId);
    expect(await ids({ sandboxId: sbx.sandboxId })).toEqual([snapshot.snapshotId]);
    expect(await ids({ name })).toEqual([snapshot.snapshotId]);
    expect(await ids({ name: `${name}-not` })).toEqual([]);
    expect((await sbx.listSnapshots().nextItems()).map((s) => s.snapshotId)).toEqual([snapshot.snapshotId]);

    const [a, b] = await Promise.all([create(snapshot.snapshotId), create(name)]);
    for (const s of [a, b]) {
      expect(await s.files.read('/home/user/app/config.json')).toBe('{"env":"test"}');
      expect(await s.files.exists('/etc/debian_version')).toBe(false);
    }
    // Owned by the user in the new sandbox's own uid range: the user can write it.
    await a.commands.run('echo changed > /home/user/app/config.json');
    expect(await a.files.read('/home/user/app/config.json')).toBe('changed\n');
    expect(await b.files.read('/home/user/app/config.json')).toBe('{"env":"test"}');
    expect(await sbx.files.read('/home/user/app/config.json')).toBe('{"env":"test"}');

    expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
    expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(false);
    expect(existsSync(join(cove.config.home, 'snapshots', snapshot.snapshotId))).toBe(false);
    expect(await a.files.read('/home/user/app/config.json')).toBe('changed\n'); // its own copy
    await expect(create(snapshot.snapshotId)).rejects.toThrow();
  });

  it('a snapshot of a paused sandbox, and one name only once', async () => {
    const sbx = await create();
    await sbx.files.write('/home/user/p.txt', 'paused');
    await sbx.pause({ keepMemory: false });
    const name = `snap-${randomUUID()}`;
    const snapshot = await Sandbox.createSnapshot(sbx.sandboxId, { name });
    await expect(Sandbox.createSnapshot(sbx.sandboxId, { name })).rejects.toThrow(/already exists/);
    const from = await create(snapshot.snapshotId);
    expect(await from.files.read('/home/user/p.txt')).toBe('paused');
    expect(await Sandbox.deleteSnapshot(name)).toBe(true);
  });

  it('forks once and twice: new ids, the files, independent; the source keeps its id and end time', async () => {
    const sbx = await create();
    await sbx.files.write('/home/user/state.txt', 'state before fork');
    const endAt = (await sbx.getInfo()).endAt.getTime();

    const [fork] = await sbx.fork();
    if (!(fork instanceof Sandbox)) throw new Error(`fork failed: ${String(fork)}`);
    expect(fork.sandboxId).not.toBe(sbx.sandboxId);
    expect(await sbx.isRunning()).toBe(true);
    expect(await fork.isRunning()).toBe(true);
    expect(await fork.files.read('/home/user/state.txt')).toBe('state before fork');
    await fork.files.write('/home/user/state.txt', 'modified in fork');
    expect(await sbx.files.read('/home/user/state.txt')).toBe('state before fork');
    expect((await sbx.getInfo()).endAt.getTime()).toBe(endAt);

    const forks = await Sandbox.fork(sbx.sandboxId, { count: 2, timeoutMs: 60_000 });
    const ids = new Set(forks.map((f) => (f instanceof Sandbox ? f.sandboxId : String(f))));
    expect(ids.size).toBe(2);
    expect(ids.has(sbx.sandboxId)).toBe(false);
    for (const f of forks) {
      if (!(f instanceof Sandbox)) throw f;
      expect(await f.files.read('/home/user/state.txt')).toBe('state before fork');
    }
  });

  it('forking a killed sandbox: not found', async () => {
    const sbx = await create();
    await sbx.kill();
    await expect(sbx.fork()).rejects.toThrow(SandboxNotFoundError);
  });
});

describe.skipIf(!canRunSandboxes)('the disk budget of snapshots and paused sandboxes', () => {
  let cove: TestCove;

  beforeAll(async () => {
    cove = await startTestCove({ ...testConfig(), storageBudgetMiB: 0 });
    useCove(cove);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('refuses a snapshot, fork or disk pause past the budget, with a clear error; a frozen pause needs no disk', async () => {
    const sbx = await create();
    const refused: unknown = await sbx.createSnapshot().catch((err: unknown) => err);
    // 507, which the SDK reports at once as it is: a 429 it would retry first, in vain.
    expect(refused).toBeInstanceOf(SandboxError);
    expect(refused).not.toBeInstanceOf(RateLimitError);
    expect(String(refused)).toMatch(/507: .*COVE_STORAGE_BUDGET_MB/);
    await expect(sbx.pause({ keepMemory: false })).rejects.toThrow(/budget/);
    await expect(sbx.fork()).rejects.toThrow(/budget/);
    expect(await sbx.isRunning()).toBe(true);
    if (onRunsc) {
      // gVisor's memory pause is a checkpoint image on disk: refused too, and the sandbox runs on
      await expect(sbx.pause()).rejects.toThrow(/budget/);
      expect(await sbx.isRunning()).toBe(true);
      return;
    }
    expect(await sbx.pause()).toBe(true);
    await sbx.connect();
    expect(await sbx.isRunning()).toBe(true);
  });
});
