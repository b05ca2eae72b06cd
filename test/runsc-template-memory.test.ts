import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox, Template } from 'e2b';
import { canRunSandboxes, runscInstalled, startTestCove, stopTestCove, testConfig } from './helpers.ts';

/**
 * A template with a start command on gVisor starts from memory, as E2B's templates do: the
 * first create boots cold and a capture is taken beside it once the ready command succeeds;
 * later creates restore that capture, so their server is the captured one (same boot token,
 * up at once), each with its own id, files and envs.
 */
describe.skipIf(!canRunSandboxes || !runscInstalled)('templates that start from memory on gVisor', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  const name = `mem-${randomBytes(3).toString('hex')}`;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ runtime: 'runsc' }));
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    await fetch(`${cove.url}/templates/${name}`, { method: 'DELETE', headers: { 'X-API-Key': cove.apiKey } });
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const captured = () => {
    const dir = join(cove.config.templatesHome, 'templates', name);
    return (
      existsSync(dir) && readdirSync(dir).some((b) => existsSync(join(dir, b, 'memory.runsc', 'meta.json')))
    );
  };
  const token = async (sbx: Sandbox) => (await sbx.commands.run('cat /tmp/boot-token')).stdout.trim();
  const served = async (sbx: Sandbox) =>
    (await sbx.commands.run('curl -sf localhost:8000/ -o /dev/null -w "%{http_code}"')).stdout;

  it('captures after the ready command and restores later sandboxes from it', async () => {
    // socketserver waits with poll(), which this gVisor can save (not epoll on TCP: docs/runtimes.md).
    const start =
      'bash -c \'od -An -N8 -tx8 /dev/urandom | tr -d " " > /tmp/boot-token; exec python3 -m http.server 8000\'';
    await Template.build(
      Template().fromTemplate('base').setStartCmd(start, 'curl -sf localhost:8000/'),
      name,
    );

    const cold = await Sandbox.create(name, { timeoutMs: 120_000 });
    expect(await served(cold)).toBe('200');
    for (let i = 0; !captured(); i++) {
      if (i > 600) throw new Error('no capture in 60 s');
      await new Promise((r) => setTimeout(r, 100));
    }

    const [a, b] = await Promise.all([
      Sandbox.create(name, { timeoutMs: 120_000, envs: { WHO: 'a' } }),
      Sandbox.create(name, { timeoutMs: 120_000, envs: { WHO: 'b' } }),
    ]);
    expect(await token(a)).toBe(await token(b)); // the captured server, not a new one
    expect(await token(a)).not.toBe(await token(cold));
    expect(await served(a)).toBe('200');
    expect(await served(b)).toBe('200');
    expect((await a.commands.run('echo $WHO')).stdout.trim()).toBe('a');
    expect((await b.commands.run('echo $WHO')).stdout.trim()).toBe('b');
    await a.files.write('/home/user/mine.txt', 'a');
    expect(await b.files.exists('/home/user/mine.txt')).toBe(false);
    expect(a.sandboxId).not.toBe(b.sandboxId);
    for (const s of [cold, a, b]) await s.kill();
  });
});
