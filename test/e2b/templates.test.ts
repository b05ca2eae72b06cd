import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildError, Sandbox, Template, type LogEntry } from 'e2b';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

/**
 * Templates built with the unmodified SDK's Template builder (spec 2.15), from Cove's `base`
 * (never a fresh Debian: CI time). The template cache is shared with other test runs, so every
 * name here is unique and deleted at the end.
 */
describe.skipIf(!canRunSandboxes)('templates built with the E2B Template SDK', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let context: string;
  const name = `cove-test-${randomBytes(4).toString('hex')}`;
  const made: string[] = [];

  const api = (method: string, path: string, body?: unknown) =>
    fetch(`${cove.url}${path}`, {
      method,
      headers: { 'X-API-Key': cove.apiKey, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });

  /** The builder of the main template; `last` is its last RUN (changed to test partial rebuilds). */
  const recipe = (last: string) =>
    Template({ fileContextPath: context })
      .fromTemplate('base')
      .runCmd(`echo built-by-run > /tmp/run.txt # ${name}`)
      .copy('app/', '/opt/app/')
      .setEnvs({ MODE: 'prod', TOOLS: '$HOME/tools' })
      .setWorkdir('/opt/app')
      .runCmd(last)
      .setStartCmd('python3 -m http.server 8000', 'curl -sf http://localhost:8000/hello.txt');

  const build = async (
    t: Parameters<typeof Template.build>[0],
    ref: string,
    opts: { cpuCount?: number; memoryMB?: number } = {},
  ) => {
    const logs: LogEntry[] = [];
    made.push(ref.split(':')[0]!);
    await Template.build(t, ref, { ...opts, onBuildLogs: (e) => logs.push(e) });
    return logs.map((e) => e.message);
  };

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    context = await mkdtemp(join(tmpdir(), 'cove-template-ctx-'));
    await mkdir(join(context, 'app', 'sub'), { recursive: true });
    await writeFile(join(context, 'app', 'hello.txt'), 'hello from COPY\n');
    await writeFile(join(context, 'app', 'sub', 'deep.txt'), 'deep\n');
    // Copied as a link, as E2B and Docker do (upstream's build test has one): it is a name
    // resolved in the sandbox, so it reads the sandbox's /etc/hostname, never the host's.
    await symlink('/etc/hostname', join(context, 'app', 'abs-link'));
  });

  afterAll(async () => {
    for (const n of new Set(made)) await api('DELETE', `/templates/${n}`);
    if (context) await rm(context, { recursive: true, force: true });
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('builds every step type from base; a sandbox of it has the files, env, workdir and a ready server', async () => {
    const logs = await build(
      recipe('cat hello.txt sub/deep.txt > copied.txt && whoami > who.txt'),
      `${name}:v1`,
    );
    expect(logs.some((l) => /\[1\/5\] RUN echo built-by-run/.test(l))).toBe(true);
    expect(await Template.exists(name)).toBe(true);
    expect(await Template.exists(`${name}-missing`)).toBe(false);

    const sbx = await Sandbox.create(`${name}:v1`);
    try {
      const r = await sbx.commands.run(
        'pwd; echo $MODE $TOOLS; cat /tmp/run.txt copied.txt who.txt; stat -c %U /opt/app/hello.txt; readlink abs-link',
      );
      expect(r.stdout.split('\n')).toEqual([
        '/opt/app',
        'prod /home/user/tools',
        'built-by-run',
        'hello from COPY',
        'deep',
        'user',
        'user',
        '/etc/hostname',
        '',
      ]);
      // The start command's server answered the ready command before create returned.
      const served = await sbx.commands.run('curl -s http://localhost:8000/hello.txt');
      expect(served.stdout).toBe('hello from COPY\n');
    } finally {
      await sbx.kill();
    }
  });

  it('serves an unchanged rebuild from cache, and rebuilds only from the changed step on', async () => {
    const again = await build(
      recipe('cat hello.txt sub/deep.txt > copied.txt && whoami > who.txt'),
      `${name}:v1`,
    );
    for (const step of ['1/5', '2/5', '3/5', '4/5', '5/5'])
      expect(again.some((l) => l.startsWith(`CACHED [${step}]`))).toBe(true);

    const changed = await build(recipe('echo changed > changed.txt'), `${name}:v2`);
    for (const step of ['1/5', '2/5', '3/5', '4/5'])
      expect(changed.some((l) => l.startsWith(`CACHED [${step}]`))).toBe(true);
    expect(changed.some((l) => l.startsWith('[5/5] RUN echo changed'))).toBe(true);

    const tags = await Template.getTags(name);
    expect(tags.map((t) => t.tag).sort()).toEqual(['v1', 'v2']);
    await Template.assignTags(`${name}:v2`, 'prod');
    const sbx = await Sandbox.create(`${name}:prod`);
    try {
      expect((await sbx.commands.run('cat changed.txt')).stdout).toBe('changed\n');
    } finally {
      await sbx.kill();
    }
    await Template.removeTags(name, 'prod');
    await expect(Sandbox.create(`${name}:prod`)).rejects.toThrow();
  });

  it('gives sandboxes the build’s cpuCount and memoryMB; a start command that dies fails the build clearly', async () => {
    await build(Template().fromTemplate('base'), `${name}-small`, { cpuCount: 1, memoryMB: 512 });
    const sbx = await Sandbox.create(`${name}-small`);
    try {
      expect(await sbx.getInfo()).toMatchObject({ cpuCount: 1, memoryMB: 512 });
    } finally {
      await sbx.kill();
    }
    // As E2B: the build runs the start command (templates-start.test.ts has the rest).
    const dies = Template().fromTemplate('base').setStartCmd('echo dying; exit 7', 'false');
    await expect(build(dies, `${name}-dies`)).rejects.toThrow(/exited with status 7[\s\S]*dying/);
  });

  it('fails a build whose RUN fails with BuildError naming the step and its output', async () => {
    const t = Template().fromTemplate('base').runCmd('echo fine').runCmd('echo oops-output >&2; exit 3');
    const err = await build(t, `${name}-fail`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BuildError);
    expect((err as Error).message).toMatch(/step 2 \(RUN\) failed/);
    expect((err as Error).message).toMatch(/exit code 3[\s\S]*oops-output/);
    expect(await Template.exists(`${name}-fail`)).toBe(false);
    // An unknown user: E2B's wording, which upstream's runCmd test matches.
    const nobody = Template().fromTemplate('base').runCmd('whoami', { user: 'root123' });
    await expect(build(nobody, `${name}-fail`)).rejects.toThrow(
      "failed to run command 'whoami': command failed: unauthenticated: invalid username: 'root123'",
    );
  });

  it('refuses an unknown base and an image registry at once', async () => {
    const unknown = await build(Template().fromTemplate(`${name}-nope`).runCmd('true'), `${name}-x`).catch(
      (e: unknown) => e,
    );
    expect(unknown).toBeInstanceOf(BuildError);
    expect((unknown as Error).message).toMatch(/unknown base template/);
    const image = await build(Template().fromImage('quay.io/org/tool:1').runCmd('true'), `${name}-x`).catch(
      (e: unknown) => e,
    );
    expect(image).toBeInstanceOf(BuildError);
    expect((image as Error).message).toMatch(/registry quay\.io is not reachable/);
  });

  it('refuses an upload with a path out of the destination, and forged upload URLs', async () => {
    const { create } = await import('tar');
    const dir = await mkdtemp(join(tmpdir(), 'cove-evil-'));
    await mkdir(join(dir, 'x'));
    await writeFile(join(dir, 'x', 'shadow'), 'root::0:0\n');
    await create({ file: join(dir, 'evil.tgz'), gzip: true, cwd: dir, prefix: '../..' }, ['x']);
    const { readFile } = await import('node:fs/promises');
    const tarball = await readFile(join(dir, 'evil.tgz'));
    await rm(dir, { recursive: true, force: true });

    const req = (await (await api('POST', '/v3/templates', { name: `${name}-evil` })).json()) as {
      templateID: string;
      buildID: string;
    };
    made.push(`${name}-evil`);
    const hash = randomBytes(32).toString('hex');
    const link = (await (await api('GET', `/templates/${req.templateID}/files/${hash}`)).json()) as {
      present: boolean;
      url: string;
    };
    expect(link.present).toBe(false);
    const forged = link.url.replace(/signature=[0-9a-f]+/, `signature=${'0'.repeat(64)}`);
    expect((await fetch(forged, { method: 'PUT', body: tarball })).status).toBe(403);
    expect((await fetch(link.url, { method: 'PUT', body: tarball })).status).toBe(200);
    const trigger = await api('POST', `/v2/templates/${req.templateID}/builds/${req.buildID}`, {
      fromTemplate: 'base',
      steps: [{ type: 'COPY', args: ['x', '/x', '', ''], filesHash: hash }],
    });
    expect(trigger.status).toBe(202);
    let status: { status: string; reason?: { message: string; step?: string } };
    do {
      await new Promise((r) => setTimeout(r, 200));
      status = (await (
        await api('GET', `/templates/${req.templateID}/builds/${req.buildID}/status`)
      ).json()) as typeof status;
    } while (status.status === 'building' || status.status === 'waiting');
    expect(status.status).toBe('error');
    expect(status.reason).toMatchObject({ step: '1' });
    expect(status.reason?.message).toMatch(/\.\.\/\.\.\/x\/shadow: the path leaves the destination/);
  });

  it('deletes a template: new sandboxes cannot use it, running ones keep working', async () => {
    const sbx = await Sandbox.create(`${name}:v1`);
    try {
      await Template.removeTags(name, 'v2');
      expect((await api('DELETE', `/templates/${name}`)).status).toBe(204);
      expect(await Template.exists(name)).toBe(false);
      await expect(Sandbox.create(`${name}:v1`)).rejects.toThrow();
      expect((await sbx.commands.run('cat /opt/app/hello.txt')).stdout).toBe('hello from COPY\n');
    } finally {
      await sbx.kill();
    }
  });
});
