import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { access, chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../core/exec.ts';
import { withLock } from '../../core/lock.ts';
import { FINALIZE_SCRIPT } from '../builder.ts';
import { readLayer } from './layers.ts';
import type { BuildLog, Layer } from './run-build.ts';
import { baseKey, StepError } from './spec.ts';

/** A registry image as skopeo names it: `docker://<registry>/<repository>:<tag>` or `@<digest>`. */
export interface ImageRef {
  registry: string;
  repository: string;
  /** `:tag` or `@sha256:…` */
  reference: string;
}

/** Where pulls go and how (COVE_REGISTRY_MIRROR, COVE_INSECURE_REGISTRIES). */
export interface RegistryOptions {
  /** A registry host that serves Docker Hub's images (`mirror.example.com[:port]`). */
  mirror?: string;
  /** Registries spoken to over plain HTTP or with unverified TLS; loopback ones always are. */
  insecure: string[];
}

export type ImageSource =
  | { kind: 'registry'; image: string; registry?: unknown }
  /** An OCI or docker-archive tar (`cove template import`), already stored by the file store. */
  | { kind: 'archive'; path: string };

const DOCKER_HUB = 'docker.io';
const PULL_TIMEOUT_MS = 20 * 60_000;

/** Docker's reference rules: a first component with a dot, a colon or `localhost` is a registry. */
export function parseImageRef(image: string): ImageRef {
  const bad = () => new StepError('base', `fromImage ${JSON.stringify(image)} is not an image reference`);
  if (!/^[a-zA-Z0-9][a-zA-Z0-9._\-/:@]*$/.test(image) || image.includes('//')) throw bad();
  const slash = image.indexOf('/');
  const first = slash < 0 ? '' : image.slice(0, slash);
  const hasRegistry = /[.:]/.test(first) || first === 'localhost';
  const registry = hasRegistry ? first : DOCKER_HUB;
  let rest = hasRegistry ? image.slice(slash + 1) : image;
  let reference = ':latest';
  const at = rest.indexOf('@');
  if (at >= 0) {
    reference = rest.slice(at);
    rest = rest.slice(0, at);
    if (!/^@sha256:[0-9a-f]{64}$/.test(reference)) throw bad();
  } else {
    const colon = rest.lastIndexOf(':');
    if (colon >= 0) {
      reference = rest.slice(colon);
      rest = rest.slice(0, colon);
      if (!/^:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(reference)) throw bad();
    }
  }
  if (!/^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:\/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$/.test(rest)) throw bad();
  const repository = registry === DOCKER_HUB && !rest.includes('/') ? `library/${rest}` : rest;
  return { registry, repository, reference };
}

/** The credentials the SDK sent (`fromImageRegistry`), as a user and password for the registry. */
export function registryCredentials(config: unknown): { username: string; password: string } | undefined {
  if (config === undefined || config === null) return undefined;
  const c = config as Record<string, unknown>;
  if (c.type === 'registry' && typeof c.username === 'string' && typeof c.password === 'string')
    return { username: c.username, password: c.password };
  // Google's registries take the service account's JSON key as a password for `_json_key`.
  if (c.type === 'gcp' && typeof c.serviceAccountJson === 'string')
    return { username: '_json_key', password: c.serviceAccountJson };
  if (c.type === 'aws')
    throw new StepError(
      'base',
      'fromAWSRegistry: Cove does not call AWS to trade access keys for an ECR token; pass the token ' +
        '(`aws ecr get-login-password`) to fromImage as { username: "AWS", password }',
    );
  throw new StepError('base', 'fromImageRegistry: want type registry (username, password) or gcp');
}

function isInsecure(registry: string, opts: RegistryOptions): boolean {
  const host = registry.replace(/:\d+$/, '');
  return /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(host) || opts.insecure.includes(registry);
}

/** Fails at once, naming the registry, when nothing answers there (hosts with no registry access). */
function probe(registry: string, insecure: boolean): Promise<void> {
  const m = /^(.*?)(?::(\d+))?$/.exec(registry)!;
  const host = (m[1] ?? '').replace(/^\[|\]$/g, '');
  const port = Number(m[2] ?? (insecure ? 80 : 443));
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, timeout: 5_000 });
    const fail = (why: string) => {
      socket.destroy();
      reject(
        new StepError(
          'base',
          `registry ${registry} is not reachable from this host (${why}). Set COVE_REGISTRY_MIRROR for ` +
            `Docker Hub images, or build from a Cove template, e2bdev/base or debian:<suite> instead`,
        ),
      );
    };
    socket.once('connect', () => {
      socket.destroy();
      resolve();
    });
    socket.once('timeout', () => fail('no answer in 5 s'));
    socket.once('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
  });
}

/** A skopeo failure as the user's mistake it usually is: bad credentials or an unknown image. */
function pullError(what: string, err: unknown): StepError {
  const text = err instanceof Error ? err.message : String(err);
  if (/unauthorized|authentication required|denied|401|403/i.test(text))
    return new StepError('base', `${what}: the registry refused the credentials (or none were given)`, err);
  if (/manifest unknown|not found|404|name unknown/i.test(text))
    return new StepError('base', `${what}: no such image in the registry`, err);
  return new StepError('base', `${what}: ${text.slice(0, 500)}`, err);
}

interface ImageConfig {
  os?: string;
  architecture?: string;
  config?: { Env?: string[]; WorkingDir?: string };
}

/**
 * A registry image or an imported archive as a base layer (`fromImage`): skopeo (Debian's, the
 * containers/image library that podman uses) copies it into an OCI layout, checking every blob
 * against its digest; umoci unpacks that layout, whiteouts included. Cove's finishing steps
 * then add the default user `user` (E2B's), sane hosts and resolv.conf. The layer is keyed by
 * the image's manifest digest, which is content: two builds of the same image share it, and
 * every build asks the registry first, so credentials are checked each time.
 */
export async function ensureImageLayer(
  layersDir: string,
  source: ImageSource,
  opts: RegistryOptions,
  log: BuildLog,
): Promise<Layer> {
  await mkdir(layersDir, { recursive: true, mode: 0o755 });
  const work = join(layersDir, `.tmp-image-${randomBytes(6).toString('hex')}`);
  await mkdir(work, { mode: 0o700 });
  try {
    let transport: string;
    let tls: string[] = [];
    let auth: string[] = [];
    let what: string;
    if (source.kind === 'registry') {
      const ref = parseImageRef(source.image);
      let registry = ref.registry;
      if (registry === DOCKER_HUB && opts.mirror) {
        registry = opts.mirror;
        log('info', `FROM ${source.image}: pulled through the mirror ${registry}`, 'base');
      }
      const insecure = isInsecure(registry, opts);
      await probe(registry, insecure);
      transport = `docker://${registry}/${ref.repository}${ref.reference}`;
      what = `fromImage ${source.image}`;
      tls = insecure ? ['--tls-verify=false'] : [];
      const creds = registryCredentials(source.registry);
      if (creds) {
        // An auth file, never argv: other host users can read a process's arguments.
        const token = Buffer.from(`${creds.username}:${creds.password}`).toString('base64');
        await writeFile(join(work, 'auth.json'), JSON.stringify({ auths: { [registry]: { auth: token } } }), {
          mode: 0o600,
        });
        auth = ['--authfile', join(work, 'auth.json')];
      }
    } else {
      transport = (await isOciArchive(source.path))
        ? `oci-archive:${source.path}`
        : `docker-archive:${source.path}`;
      what = 'the imported archive';
    }
    const inspect = await run('skopeo', ['inspect', '--no-tags', ...tls, ...auth, transport], {
      timeoutMs: 120_000,
    }).catch((err: unknown) => {
      throw pullError(what, err);
    });
    const digest = (JSON.parse(inspect.stdout) as { Digest?: string }).Digest ?? '';
    if (!/^sha256:[0-9a-f]{64}$/.test(digest))
      throw new StepError('base', `${what}: the image has no digest`);
    const key = baseKey('image', digest);
    const dir = join(layersDir, key);
    const done = await readLayer(layersDir, key);
    if (done) {
      log('info', `FROM ${what}: ${digest}, already unpacked`, 'base');
      return done;
    }
    return await withLock(
      join(layersDir, `.image-${key}.lock`),
      async () => {
        const again = await readLayer(layersDir, key);
        if (again) return again;
        log('info', `FROM ${what}: pulling ${digest} with skopeo`, 'base');
        const oci = `${join(work, 'oci')}:image`;
        const copy = ['copy', '--quiet', ...tls.map((t) => t.replace('--', '--src-')), ...auth];
        await run('skopeo', [...copy, transport, `oci:${oci}`], { timeoutMs: PULL_TIMEOUT_MS }).catch(
          (err: unknown) => {
            throw pullError(what, err);
          },
        );
        const config = JSON.parse(
          (await run('skopeo', ['inspect', '--config', `oci:${oci}`])).stdout,
        ) as ImageConfig;
        if ((config.os ?? 'linux') !== 'linux' || !['amd64', undefined].includes(config.architecture))
          throw new StepError(
            'base',
            `${what} is for ${config.os}/${config.architecture}; this host runs linux/amd64`,
          );
        const staging = join(work, 'layer');
        await mkdir(staging, { mode: 0o755 });
        const rootfs = join(staging, 'rootfs');
        log('info', `unpacking with umoci`, 'base');
        await run('umoci', ['raw', 'unpack', '--image', oci, rootfs], { timeoutMs: PULL_TIMEOUT_MS });
        await chmod(rootfs, 0o755);
        for (const needed of ['bin/sh', 'bin/bash', 'usr/sbin/useradd'])
          await access(join(rootfs, needed)).catch(() => {
            throw new StepError(
              'base',
              `${what} has no /${needed}: sandboxes need bash (the SDK runs commands with /bin/bash -l -c) ` +
                `and useradd for the default user; use a Debian- or Ubuntu-based image, as E2B does`,
            );
          });
        const sudo = await access(join(rootfs, 'usr/bin/sudo')).then(
          () => '1',
          () => '0',
        );
        await run(
          'bash',
          [FINALIZE_SCRIPT, rootfs, 'user', '1000', '1000', '/home/user', '/bin/bash', sudo],
          {
            timeoutMs: 120_000,
          },
        ).catch((err: unknown) => {
          throw new StepError('base', `${what}: adding the default user failed: ${String(err)}`, err);
        });
        const layer: Layer = {
          key,
          rootfs: join(dir, 'rootfs'),
          ctx: {
            env: imageEnv(config.config?.Env ?? []),
            user: { name: 'user', uid: 1000, gid: 1000, home: '/home/user' },
            ...(config.config?.WorkingDir && { workdir: config.config.WorkingDir }),
          },
        };
        await writeFile(join(staging, 'layer.json'), `${JSON.stringify(layer)}\n`);
        await rename(staging, dir);
        log('info', `FROM ${what}: unpacked ${digest}`, 'base');
        return layer;
      },
      { timeoutMs: PULL_TIMEOUT_MS },
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** An OCI archive has an `oci-layout` file at its top; a `docker save` archive a manifest.json. */
async function isOciArchive(path: string): Promise<boolean> {
  const { stdout } = await run('tar', ['-tf', path], { timeoutMs: 60_000 }).catch(() => ({ stdout: '' }));
  return stdout.split('\n').some((name) => name.replace(/^\.\//, '') === 'oci-layout');
}

/** The image's `Env` (`K=V` lines) with a PATH, which some images leave out. */
function imageEnv(lines: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of lines.slice(0, 1000)) {
    const eq = line.indexOf('=');
    if (eq > 0) env[line.slice(0, eq)] = line.slice(eq + 1);
  }
  env.PATH ??= '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
  return env;
}
