import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildError, Sandbox, Template, type LogEntry } from 'e2b';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

/**
 * The start command at build time, as E2B does it (its snapshot is taken after the start and
 * ready commands): a build runs them once before it publishes, so a failing start command
 * fails Template.build with its output, and nothing is published; creates still run them.
 */
describe.skipIf(!canRunSandboxes)('template start command checked during the build', () => {
  let cove: Cove & { config: Config; apiKey: string };
  const name = `cove-start-${randomBytes(4).toString('hex')}`;
  const made: string[] = [];

  const build = async (t: Parameters<typeof Template.build>[0], ref: string) => {
    const logs: LogEntry[] = [];
    made.push(ref);
    await Template.build(t, ref, { onBuildLogs: (e) => logs.push(e) });
    return logs;
  };

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    for (const n of made)
      await fetch(`${cove.url}/templates/${n}`, { method: 'DELETE', headers: { 'X-API-Key': cove.apiKey } });
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('fails the build when the start command exits non-zero, with its output; nothing is published', async () => {
    const t = Template()
      .fromTemplate('base')
      .setStartCmd('echo starting-up; echo broken-config >&2; exit 7', 'false');
    const err = await build(t, `${name}-bad`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    const message = (err as Error).message;
    expect(message).toMatch(/start command exited with status 7/);
    expect(message).toMatch(/starting-up[\s\S]*broken-config/);
    expect(await Template.exists(`${name}-bad`)).toBe(false);

    // Its step is `finalize`, which the SDK maps to the stack trace of the setStartCmd call.
    const line = Number(/templates-start\.test\.ts:(\d+):\d+/.exec((err as Error).stack ?? '')?.[1]);
    expect(readFileSync(import.meta.filename, 'utf8').split('\n')[line - 1]).toContain('setStartCmd');
  });

  it('builds when the start command gets ready, shows its output in the build log, and creates run it again', async () => {
    const start = 'echo "started $(id -un) in $(pwd) with MODE=$MODE"; date +%s%N > /tmp/started; sleep 600';
    const t = Template()
      .fromTemplate('base')
      .setEnvs({ MODE: 'prod' })
      .setWorkdir('/tmp')
      .setStartCmd(start, 'test -s /tmp/started');
    const logs = await build(t, `${name}-good`);
    const finalize = logs.filter((l) => l.message.includes('started user in /tmp with MODE=prod'));
    expect(finalize).toHaveLength(1);
    expect(logs.some((l) => /start command was ready in/.test(l.message))).toBe(true);

    // The build's sandbox is gone; a sandbox of the template starts its own server.
    const sbx = await Sandbox.create(`${name}-good`);
    try {
      expect((await sbx.commands.run('test -s /tmp/started && echo yes')).stdout.trim()).toBe('yes');
      const ps = await sbx.commands.run('pgrep -x sleep | wc -l');
      expect(Number(ps.stdout.trim())).toBe(1);
    } finally {
      await sbx.kill();
    }
  });

  it('a start command that fails only in some sandbox still fails that create', async () => {
    const start = 'if [ -n "$DIE" ]; then echo dying; exit 7; fi; touch /tmp/up; sleep 600';
    await build(Template().fromTemplate('base').setStartCmd(start, 'test -f /tmp/up'), `${name}-env`);
    await expect(Sandbox.create(`${name}-env`, { envs: { DIE: '1' } })).rejects.toThrow(
      /exited \(status 7\)[\s\S]*dying/,
    );
  });
});
