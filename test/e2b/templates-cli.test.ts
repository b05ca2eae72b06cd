import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const cli = join(import.meta.dirname, '..', '..', 'src', 'cli', 'main.ts');

/** `cove template build -f Dockerfile`, `list`, `delete` against a test server. */
describe.skipIf(!canRunSandboxes)('cove template (CLI)', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let context: string;
  const name = `cove-cli-${randomBytes(4).toString('hex')}`;
  const run = (...args: string[]) =>
    promisify(execFile)(process.execPath, [cli, 'template', ...args], {
      env: { ...process.env, COVE_URL: cove.url, COVE_API_KEY: cove.apiKey, E2B_API_KEY: cove.apiKey },
      cwd: context,
    });

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    context = await mkdtemp(join(tmpdir(), 'cove-cli-ctx-'));
    await mkdir(join(context, 'site'));
    await writeFile(join(context, 'site', 'index.html'), `hello ${name}\n`);
    await writeFile(
      join(context, 'Dockerfile'),
      `FROM e2bdev/base\nCOPY site/ /srv/site/\nENV GREETING=hi\nWORKDIR /srv/site\nRUN echo "$GREETING" > greeting.txt # ${name}\n`,
    );
  });

  afterAll(async () => {
    if (context) await rm(context, { recursive: true, force: true });
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('builds from a Dockerfile, lists with disk use, and deletes', async () => {
    const built = await run('build', '--name', `${name}:v1`, '-f', 'Dockerfile', '.');
    expect(built.stdout + built.stderr).toMatch(/\[\d\/\d\] RUN echo/);

    const listed = await run('list');
    const line = listed.stdout.split('\n').find((l) => l.startsWith(name));
    expect(line).toMatch(new RegExp(`^${name}\\s+v1\\s+api\\s+\\S+\\s+\\S+\\s+\\d+ MiB`));

    const sbx = await Sandbox.create(`${name}:v1`);
    try {
      const r = await sbx.commands.run('pwd; cat index.html greeting.txt');
      expect(r.stdout).toBe(`/srv/site\nhello ${name}\nhi\n`);
    } finally {
      await sbx.kill();
    }

    await run('delete', name);
    expect((await run('list')).stdout).not.toContain(name);
    await expect(run('delete', name)).rejects.toMatchObject({ code: 3 });
  });
});
