/**
 * Stand-ins, on this machine, for what upstream's tests take from Docker Hub and E2B's cloud:
 *
 * - `ubuntu:22.04`, which 9 template tests build from: Debian's docker-registry on the loopback
 *   holds an image made of Cove's own `debian:bookworm` layer (mmdebstrap from Debian's archive,
 *   src/templates/build/debian.ts), pushed as `library/ubuntu:22.04`; the server pulls Docker
 *   Hub names through it (COVE_REGISTRY_MIRROR). It is Debian standing in for Ubuntu: the tests
 *   use only a shell, coreutils, root and a home folder. The registry's storage is kept in the
 *   conformance cache, so the image is made once (as templates-image.test.ts makes its own).
 * - `devcontainer`: E2B's template for dev containers. stacktrace.test.ts only needs one of that
 *   name to exist (its builds fail on purpose), so a template of that name is made from `base`
 *   and removed after the run, unless one existed before.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run } from '../src/core/exec.ts';
import { ensureDebianLayer } from '../src/templates/build/debian.ts';

export const STAND_IN_IMAGE = 'library/ubuntu:22.04';
/** Part of the seed marker: a change here makes the image again. */
const RECIPE = `debian:bookworm as ${STAND_IN_IMAGE}, v1`;

export interface Registry {
  /** `127.0.0.1:<port>`, for COVE_REGISTRY_MIRROR. */
  mirror: string;
  stop(): void;
}

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

/**
 * Starts the registry on a free loopback port over `<cacheDir>/registry`, and pushes the
 * stand-in image into it when the storage does not hold this recipe's yet. `templatesHome` is
 * the server's template cache, where the Debian layer is (built there once when missing).
 */
export async function startRegistry(
  cacheDir: string,
  templatesHome: string,
  log: (s: string) => void,
): Promise<Registry> {
  const dir = join(cacheDir, 'registry');
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = join(dir, 'registry.yml');
  writeFileSync(
    config,
    `version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: ${dir}/data\n` +
      `http:\n  addr: 127.0.0.1:${port}\n`,
  );
  const child: ChildProcess = spawn('docker-registry', ['serve', config], { stdio: 'ignore' });
  const registry: Registry = { mirror: `127.0.0.1:${port}`, stop: () => void child.kill() };
  try {
    for (let i = 0; ; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`).catch(() => undefined);
      if (res?.ok) break;
      if (child.exitCode !== null || i > 100) throw new Error('docker-registry did not start');
      await new Promise((r) => setTimeout(r, 100));
    }
    const marker = join(dir, 'seeded');
    const seeded =
      existsSync(join(dir, 'data')) && existsSync(marker) && readFileSync(marker, 'utf8') === RECIPE;
    if (!seeded) await seed(registry.mirror, templatesHome, log);
    writeFileSync(marker, RECIPE);
  } catch (err) {
    registry.stop();
    throw err;
  }
  return registry;
}

/** Debian's minbase, packed with umoci and pushed with skopeo (both from Debian's archive). */
async function seed(mirror: string, templatesHome: string, log: (s: string) => void): Promise<void> {
  log(`making the ${STAND_IN_IMAGE} stand-in (Debian bookworm) in the registry at ${mirror}`);
  const debian = await ensureDebianLayer(join(templatesHome, 'templates', '.layers'), 'bookworm', log);
  const work = mkdtempSync(join(tmpdir(), 'cove-conformance-image-'));
  try {
    const oci = `${join(work, 'oci')}:v1`;
    const bundle = join(work, 'bundle');
    await run('umoci', ['init', '--layout', join(work, 'oci')]);
    await run('umoci', ['new', '--image', oci]);
    await run('umoci', ['unpack', '--image', oci, bundle]);
    await run('cp', ['-a', `${debian.rootfs}/.`, join(bundle, 'rootfs')], { timeoutMs: 300_000 });
    await run('umoci', ['repack', '--image', oci, bundle], { timeoutMs: 600_000 });
    await run('umoci', ['config', '--image', oci, '--config.cmd', '/bin/bash']);
    await run(
      'skopeo',
      ['copy', '--quiet', '--dest-tls-verify=false', `oci:${oci}`, `docker://${mirror}/${STAND_IN_IMAGE}`],
      { timeoutMs: 600_000 },
    );
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * Makes template `name` from `base` through the build API unless it exists; resolves to its
 * undo (delete it again), a no-op when it was there before.
 */
export async function ensureTemplate(
  url: string,
  apiKey: string,
  name: string,
): Promise<() => Promise<void>> {
  const headers = { 'x-api-key': apiKey, 'content-type': 'application/json' };
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers,
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
  };
  if ((await call('GET', `/templates/aliases/${name}`)).status === 200) return async () => {};
  const { body } = await call('POST', '/v3/templates', { name });
  const buildID = String(body.buildID);
  const triggered = await call('POST', `/v2/templates/${name}/builds/${buildID}`, { fromTemplate: 'base' });
  if (triggered.status !== 202) throw new Error(`template ${name}: ${JSON.stringify(triggered.body)}`);
  for (let i = 0; ; i++) {
    const { body: s } = await call('GET', `/templates/${name}/builds/${buildID}/status`);
    if (s.status === 'ready') break;
    if (s.status === 'error' || i > 600) throw new Error(`template ${name}: ${JSON.stringify(s.reason)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return async () => {
    await call('DELETE', `/templates/${name}`).catch(() => {});
  };
}
