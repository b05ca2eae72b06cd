import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import { loadSecretsKey } from '../../src/secrets/seal.ts';
import { storeSealing } from '../../src/secrets/sealed-tokens.ts';
import { createSqliteStore } from '../../src/store/sqlite.ts';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

/**
 * Sandbox tokens at rest (src/secrets/sealed-tokens.ts), through the unmodified SDK: the state
 * database and its WAL never hold a sandbox's agent, envd access or traffic access token in
 * clear, and after a restart of Cove each sandbox still works with the tokens the SDK holds:
 * a paused one (resumed by connect), one made from a snapshot, and a fork.
 */
describe.skipIf(!canRunSandboxes)('sandbox tokens are sealed in the state database', () => {
  const config = testConfig();
  let cove: TestCove;

  beforeAll(async () => {
    cove = await startTestCove(config);
    pointSdkAt(cove);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const create = (template: string) =>
    Sandbox.create(template, {
      timeoutMs: 120_000,
      secure: true,
      network: { allowPublicTraffic: false },
      metadata: { test: randomUUID() },
    });

  /** Each token the state database holds for its sandboxes, opened with the instance's key. */
  async function storedTokens(): Promise<Map<string, string[]>> {
    const key = await loadSecretsKey(config.secretsKeyFile);
    const store = createSqliteStore(
      join(config.home, 'cove.db'),
      storeSealing(key, () => {}),
    );
    const tokens = new Map(
      store
        .listSandboxes()
        .map((r) => [
          r.id,
          [r.agentToken, r.envdAccessToken, r.trafficAccessToken].filter((t) => t !== undefined),
        ]),
    );
    store.close();
    return tokens;
  }

  /** What the state database's files hold, free pages and the WAL included. */
  const onDisk = () =>
    ['cove.db', 'cove.db-wal', 'cove.db-shm']
      .map((f) => join(config.home, f))
      .filter(existsSync)
      .map((f) => readFileSync(f).toString('latin1'))
      .join('\n');

  /** Commands, files and a signed URL, with the tokens this SDK object holds. */
  async function works(sbx: Sandbox, file: string): Promise<void> {
    expect((await sbx.commands.run('echo alive')).stdout).toBe('alive\n');
    expect(await sbx.files.read(file)).toBe(`kept in ${file}`);
    const signed = await fetch(await sbx.downloadUrl(file, { useSignatureExpiration: 60_000 }));
    expect([signed.status, await signed.text()]).toEqual([200, `kept in ${file}`]);
    // the envd token is asked for: without it, envd refuses
    const bare = await fetch(`${cove.url}/files?path=${encodeURIComponent(file)}`, {
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '49983' },
    });
    expect(bare.status).toBe(401);
  }

  it('holds no token in clear, and every sandbox works with its own after a restart', async () => {
    const paused = await create('base');
    expect(paused.trafficAccessToken).toMatch(/^[0-9a-f]{64}$/);
    await paused.files.write('/home/user/a.txt', 'kept in /home/user/a.txt');
    const snapshot = await paused.createSnapshot();
    const fromSnapshot = await create(snapshot.snapshotId);
    await fromSnapshot.files.write('/home/user/b.txt', 'kept in /home/user/b.txt');
    const [fork] = await paused.fork();
    if (!(fork instanceof Sandbox)) throw new Error(`fork failed: ${String(fork)}`);
    await fork.files.write('/home/user/c.txt', 'kept in /home/user/c.txt');
    await paused.commands.run('python3 -m http.server 8000 --bind 0.0.0.0', { background: true });
    await paused.pause();

    await cove.close();
    const disk = onDisk(); // before storedTokens: its open would seal what was in clear
    const tokens = await storedTokens();
    const sandboxes = [paused, fromSnapshot, fork];
    expect([...tokens.keys()].sort()).toEqual(sandboxes.map((s) => s.sandboxId).sort());
    for (const [id, held] of tokens) {
      expect(held.length, id).toBe(3); // agent, envd access and traffic access
      for (const token of held) expect(disk.includes(token), `a token of ${id} in clear`).toBe(false);
    }
    // the SDK's tokens are the ones the database keeps
    expect(tokens.get(paused.sandboxId)).toContain(paused.trafficAccessToken);

    cove = await startTestCove(config);
    pointSdkAt(cove);
    const resumed = await Sandbox.connect(paused.sandboxId);
    await works(resumed, '/home/user/a.txt');
    await works(await Sandbox.connect(fromSnapshot.sandboxId), '/home/user/b.txt');
    await works(await Sandbox.connect(fork.sandboxId), '/home/user/c.txt');
    // the port proxy still wants the traffic token the SDK was given at create
    const viaGateway = (headers: Record<string, string>) =>
      fetch(cove.url, {
        headers: { 'E2b-Sandbox-Id': paused.sandboxId, 'E2b-Sandbox-Port': '8000', ...headers },
      });
    expect((await viaGateway({})).status).toBe(403);
    let served = 0;
    for (let i = 0; i < 100 && served !== 200; i++) {
      served = (await viaGateway({ 'e2b-traffic-access-token': paused.trafficAccessToken! })).status;
      if (served !== 200) await new Promise((r) => setTimeout(r, 200));
    }
    expect(served).toBe(200);
    // and what was written since the restart is sealed too
    const disk2 = onDisk();
    for (const token of [...(await storedTokens()).values()].flat())
      expect(disk2.includes(token)).toBe(false);
    expect(await Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
  });
});
