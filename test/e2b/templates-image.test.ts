import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BuildError, Sandbox, Template, type LogEntry } from 'e2b';
import type { Config } from '../../src/config/config.ts';
import { run } from '../../src/core/exec.ts';
import type { Cove } from '../../src/main.ts';
import { ensureDebianLayer } from '../../src/templates/build/debian.ts';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/**
 * fromImage from a real registry (Debian's docker-registry on the loopback, with a password)
 * holding an image the test makes itself: Debian from Debian's archive, with an ENV and a
 * WORKDIR, packed with umoci and pushed with skopeo. Also Docker Hub names through the mirror,
 * and `cove template import` of the same image as an OCI archive.
 */
describe.skipIf(!canRunSandboxes)('templates from OCI images (registry, mirror, archive)', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let work: string;
  let registry: ChildProcess;
  let port: number;
  const tag = randomBytes(3).toString('hex');
  const made: string[] = [];
  const creds = { username: 'alice', password: `pw-${randomBytes(6).toString('hex')}` };

  const build = async (t: Parameters<typeof Template.build>[0], name: string) => {
    const logs: LogEntry[] = [];
    made.push(name);
    await Template.build(t, name, { onBuildLogs: (e) => logs.push(e) });
    return logs.map((e) => e.message).join('\n');
  };

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'cove-image-'));
    port = await freePort();
    const hash = (
      await run('python3', [
        '-W',
        'ignore',
        '-c',
        'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))',
        creds.password,
      ])
    ).stdout.trim();
    await writeFile(join(work, 'htpasswd'), `${creds.username}:${hash}\n`);
    await writeFile(
      join(work, 'registry.yml'),
      `version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: ${work}/data\n` +
        `http:\n  addr: 127.0.0.1:${port}\nauth:\n  htpasswd:\n    realm: cove-test\n    path: ${work}/htpasswd\n`,
    );
    registry = spawn('docker-registry', ['serve', join(work, 'registry.yml')], { stdio: 'ignore' });
    for (let i = 0; ; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => undefined);
      if (res?.status === 401) break;
      if (i > 100) throw new Error('docker-registry did not start');
      await new Promise((r) => setTimeout(r, 100));
    }

    cove = await startTestCove(
      testConfig({
        templateBuilds: {
          concurrency: 2,
          queue: 8,
          uploadMaxBytes: 1 << 30,
          registry: { mirror: `127.0.0.1:${port}`, insecure: [] },
        },
      }),
    );
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = process.env.COVE_API_KEY = cove.apiKey;

    // The image: Debian minbase (Cove's cached debian:bookworm layer) plus an ENV and a WORKDIR.
    const layers = join(cove.config.templatesHome, 'templates', '.layers');
    const debian = await ensureDebianLayer(layers, 'bookworm', () => {});
    const oci = join(work, 'oci');
    await run('umoci', ['init', '--layout', oci]);
    await run('umoci', ['new', '--image', `${oci}:v1`]);
    await run('umoci', ['unpack', '--image', `${oci}:v1`, join(work, 'bundle')]);
    await run('cp', ['-a', `${debian.rootfs}/.`, join(work, 'bundle', 'rootfs')], { timeoutMs: 120_000 });
    await run('bash', ['-c', `echo ${tag} > ${work}/bundle/rootfs/etc/image-tag`]);
    await run('umoci', ['repack', '--image', `${oci}:v1`, join(work, 'bundle')], { timeoutMs: 300_000 });
    await run('umoci', [
      'config',
      '--image',
      `${oci}:v1`,
      '--config.env',
      `MARK=img-${tag}`,
      '--config.workingdir',
      '/srv',
    ]);
    const dest = `docker://127.0.0.1:${port}/team/app:v1`;
    const push = [
      'copy',
      '--quiet',
      '--dest-tls-verify=false',
      '--dest-creds',
      `${creds.username}:${creds.password}`,
    ];
    await run('skopeo', [...push, `oci:${oci}:v1`, dest], { timeoutMs: 300_000 });
    await run('skopeo', ['copy', '--quiet', `oci:${oci}:v1`, `oci-archive:${work}/image.tar`], {
      timeoutMs: 300_000,
    });
  }, 600_000);

  afterAll(async () => {
    for (const name of made)
      await fetch(`${cove.url}/templates/${name}`, {
        method: 'DELETE',
        headers: { 'X-API-Key': cove.apiKey },
      });
    registry?.kill();
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
    await rm(work, { recursive: true, force: true });
  });

  const check = async (template: string) => {
    const sbx = await Sandbox.create(template);
    try {
      const r = await sbx.commands.run(
        'echo $MARK; pwd; whoami; cat /etc/image-tag; cat /tmp/step 2>/dev/null || true',
      );
      return r.stdout.trim().split('\n');
    } finally {
      await sbx.kill();
    }
  };

  it('builds from a registry image with credentials: its files, ENV and WORKDIR, and steps on top', async () => {
    const name = `img-reg-${tag}`;
    const t = Template()
      .fromImage(`127.0.0.1:${port}/team/app:v1`, creds)
      .runCmd('echo step-ran > /tmp/step');
    const logs = await build(t, name);
    expect(logs).toMatch(/pulling sha256:[0-9a-f]{64} with skopeo/);
    expect(await check(name)).toEqual([`img-${tag}`, '/srv', 'user', tag, 'step-ran']);
    // The build sandbox trusted this instance's egress CA; the template it made does not.
    const ca = readFileSync(join(cove.config.home, 'egress-ca', 'ca.pem'), 'utf8').trim();
    const builds = join(cove.config.templatesHome, 'templates', name);
    for (const hash of readdirSync(builds).filter((h) => existsSync(join(builds, h, 'rootfs')))) {
      const certs = join(builds, hash, 'rootfs', 'etc', 'ssl', 'certs');
      expect(existsSync(join(certs, 'cove-egress-ca.pem'))).toBe(false);
      expect(readFileSync(join(certs, 'ca-certificates.crt'), 'utf8')).not.toContain(ca);
    }
    // The same digest again: unpacked once, but the registry is still asked (credentials checked).
    const again = await build(
      Template().fromImage(`127.0.0.1:${port}/team/app:v1`, creds),
      `img-reg2-${tag}`,
    );
    expect(again).toMatch(/already unpacked/);
  }, 600_000);

  it('pulls Docker Hub names through the configured mirror', async () => {
    const name = `img-mirror-${tag}`;
    const logs = await build(Template().fromImage('team/app:v1', creds), name);
    expect(logs).toMatch(new RegExp(`through the mirror 127\\.0\\.0\\.1:${port}`));
    expect((await check(name)).slice(0, 4)).toEqual([`img-${tag}`, '/srv', 'user', tag]);
  }, 300_000);

  it('fails with a clear BuildError: wrong password, no credentials, unknown image, unreachable registry', async () => {
    const image = `127.0.0.1:${port}/team/app:v1`;
    const wrong = { username: creds.username, password: 'nope' };
    for (const [t, why] of [
      [Template().fromImage(image, wrong), /refused the credentials/],
      [Template().fromImage(image), /refused the credentials/],
      [Template().fromImage(`127.0.0.1:${port}/team/nothing:v1`, creds), /no such image|refused/],
      [Template().fromImage('127.0.0.1:1/team/app:v1'), /registry 127\.0\.0\.1:1 is not reachable/],
    ] as const) {
      const err = await build(t, `img-bad-${tag}`).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BuildError);
      expect(String((err as Error).message)).toMatch(why);
    }
  }, 300_000);

  it('cove template import makes a template of an OCI archive', async () => {
    const name = `img-import-${tag}`;
    made.push(name);
    // Not helpers' cli(): it blocks this process, which serves the API the CLI calls.
    const cove_ = (args: string[]) =>
      run(join(import.meta.dirname, '..', '..', 'bin', 'cove'), args, {
        timeoutMs: 240_000,
        env: { ...process.env, COVE_URL: cove.url, COVE_API_KEY: cove.apiKey },
      }).then(
        (r) => ({ status: 0, stderr: r.stderr }),
        (err: Error) => ({ status: 1, stderr: err.message }),
      );
    const r = await cove_(['template', 'import', join(work, 'image.tar'), '--name', name]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/template .* is ready/);
    expect((await check(name)).slice(0, 4)).toEqual([`img-${tag}`, '/srv', 'user', tag]);
    const bad = await cove_(['template', 'import', join(work, 'htpasswd'), '--name', `${name}-bad`]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/not a valid tar/);
  }, 300_000);
});
