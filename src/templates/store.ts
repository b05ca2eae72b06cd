import { spawn } from 'node:child_process';
import { chmod, mkdir, readFile, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CoveError, isCoveError } from '../core/errors.ts';
import { FINALIZE_SCRIPT, buildWithMmdebstrap } from './builder.ts';
import type { BuildFn } from './builder.ts';
import { withLock } from '../core/lock.ts';
import { BUILDER_VERSION, hashRecipeDir, loadRecipe, validateTag, validateTemplateName } from './recipe.ts';
import type { Recipe } from './recipe.ts';

export interface TemplateLimits {
  cpus: number;
  memoryMiB: number;
  pids: number;
}

/** A built template: a plain rootfs directory and the defaults a sandbox of it starts with. */
export interface Template {
  name: string;
  /** Build key (hash of the recipe); changes whenever the recipe does. */
  hash: string;
  /**
   * Absolute path of the rootfs, mode 0755, files owned by host ids as the packages made
   * them. Shared read-only by every sandbox (idmapped overlay lower layer): never write to it.
   */
  rootfs: string;
  limits: TemplateLimits;
  defaultUser: { name: string; uid: number; gid: number; home: string };
  /** Default environment of processes in the sandbox (PATH, LANG, ...). */
  env: Record<string, string>;
  /** A server the sandbox must run (there is no init system): the manager starts it at create. */
  start?: TemplateStart;
  /** The runtime backend its sandboxes use (recipe `runtime`); the server's default when absent. */
  runtime?: string;
  /** Where commands start when they name no cwd (E2B `setWorkdir`); the user's home when absent. */
  workdir?: string;
}

/** The recipe's `start` (templates/README.md): a command, its log, and its readiness probe. */
export interface TemplateStart {
  command: string;
  /** The sandbox user it runs as; the template's user when absent. */
  user?: string;
  log: string;
  readyPort?: number;
  /** E2B's `readyCmd`: create returns once this shell command exits 0 in the sandbox. */
  readyCmd?: string;
  readyTimeoutMs: number;
}

/**
 * Templates by name, built from recipes in `recipesDir/<name>/` into
 * `home/templates/<name>/<hash>/rootfs`.
 *
 * The current build of a name is the one whose hash matches its recipe (or, for a name with
 * no recipe any more, the last one built). Builds are published by an atomic rename, so a
 * rootfs that `get` returns is complete and never changes. `ensure` builds under an
 * inter-process lock (lock.ts); callers in several processes may call it at once and only
 * one builds. After a successful build, builds of older recipes are removed unless a mount
 * still references them or their `refs/` directory is not empty: a sandbox that needs its
 * lower layer while unmounted (paused) must put a file in `<rootfs>/../refs/` until it is gone.
 */
export interface TemplateStore {
  /**
   * The current build; CoveError('not_found') for an unknown name or one not built for its
   * recipe. Reflects a changed recipe within a second (results are reused that long).
   */
  get(name: string): Promise<Template>;
  /** The current build, building it first when missing or when the recipe changed (minutes). */
  ensure(name: string, opts?: { log?: (line: string) => void }): Promise<Template>;
  /** Every name with a current build, sorted by name. */
  list(): Promise<Template[]>;
  /** One build of a name, current or not (a paused sandbox's or a snapshot's lower layer);
   * CoveError('not_found') once it is pruned. */
  getBuild(name: string, hash: string): Promise<Template>;
}

export interface TemplateStoreOptions {
  /** Cove's state root (COVE_HOME, /var/lib/cove by default); the cache is `home/templates`. */
  home: string;
  /** Folder of recipes: `recipesDir/<name>/template.json`. */
  recipesDir: string;
  /** Replaces the mmdebstrap builder (tests). */
  build?: BuildFn;
  /** How long ensure waits for another process's build; 30 minutes by default. */
  lockTimeoutMs?: number;
}

/** What a build leaves beside its rootfs, `<hash>/build.json`. */
interface BuildRecord {
  name: string;
  hash: string;
  builderVersion: number;
  builtAt: string;
  buildSeconds: number;
  description: string;
  limits: TemplateLimits;
  defaultUser: Template['defaultUser'];
  env: Record<string, string>;
  start?: TemplateStart;
  runtime?: string;
  workdir?: string;
}

const HASH_DIR_RE = /^[0-9a-f]{16}$/;
const GET_CACHE_MS = 1000;

export function createTemplateStore(opts: TemplateStoreOptions): TemplateStore {
  const cacheDir = join(opts.home, 'templates');
  const build = opts.build ?? buildWithMmdebstrap;
  const lockTimeoutMs = opts.lockTimeoutMs ?? 30 * 60_000;
  const inflight = new Map<string, Promise<Template>>();
  let finalizeScript: Promise<string> | undefined;

  const recipeHash = async (name: string): Promise<string> => {
    finalizeScript ??= readFile(FINALIZE_SCRIPT, 'utf8');
    return hashRecipeDir(join(opts.recipesDir, name), [await finalizeScript]);
  };

  const readBuild = async (name: string, hash: string): Promise<Template | undefined> => {
    let text: string;
    try {
      text = await readFile(join(cacheDir, name, hash, 'build.json'), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const rec = JSON.parse(text) as BuildRecord;
    return {
      name,
      hash,
      rootfs: join(cacheDir, name, hash, 'rootfs'),
      limits: rec.limits,
      defaultUser: rec.defaultUser,
      env: rec.env,
      ...(rec.start && { start: rec.start }),
      ...(rec.runtime && { runtime: rec.runtime }),
      ...(rec.workdir !== undefined && { workdir: rec.workdir }),
    };
  };

  const currentHash = async (name: string): Promise<string | undefined> => {
    try {
      return await recipeHash(name);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    try {
      const target = await readlink(join(cacheDir, name, 'current'));
      return HASH_DIR_RE.test(target) ? target : undefined;
    } catch {
      return undefined;
    }
  };

  // get is on the sandbox-create path: hashing the recipe costs ~0.5 ms, so a result is reused
  // for a second, as long as its build is still there (another process may have pruned it).
  const recent = new Map<string, { t: Template; at: number }>();

  // `name:tag` (E2B's names, spec 2.15): a tag other than `default` is a link `<name>/tags/<tag>`
  // to a build, written by the template builder (build/publish.ts).
  const getTagged = async (ref: string): Promise<Template> => {
    const [name = '', tag = ''] = ref.split(':', 2);
    validateTemplateName(name);
    validateTag(tag);
    let hash: string | undefined;
    try {
      const target = await readlink(join(cacheDir, name, 'tags', tag));
      hash = HASH_DIR_RE.test(target) ? target : undefined;
    } catch {
      hash = undefined;
    }
    const t = hash === undefined ? undefined : await readBuild(name, hash);
    if (t === undefined) throw new CoveError('not_found', `template ${ref} does not exist`);
    return { ...t, name: `${name}:${tag}` };
  };

  const get = async (anyCase: string): Promise<Template> => {
    const ref = anyCase.toLowerCase(); // E2B's names are case-insensitive
    const name = ref.endsWith(':default') ? ref.slice(0, -':default'.length) : ref;
    if (name.includes(':')) return getTagged(name);
    validateTemplateName(name);
    const hit = recent.get(name);
    if (
      hit !== undefined &&
      Date.now() - hit.at < GET_CACHE_MS &&
      existsSync(join(hit.t.rootfs, '..', 'build.json'))
    ) {
      return structuredClone(hit.t);
    }
    const hash = await currentHash(name);
    const t = hash === undefined ? undefined : await readBuild(name, hash);
    if (t !== undefined) recent.set(name, { t: structuredClone(t), at: Date.now() });
    if (t === undefined) {
      throw new CoveError(
        'not_found',
        hash === undefined
          ? `template ${name} does not exist`
          : `template ${name} is not built for its current recipe (${hash}): run scripts/setup.sh or build it`,
      );
    }
    return t;
  };

  const buildLocked = async (
    name: string,
    recipe: Recipe,
    hash: string,
    log: (line: string) => void,
  ): Promise<Template> => {
    const nameDir = join(cacheDir, name);
    await mkdir(nameDir, { recursive: true, mode: 0o755 });
    return withLock(
      join(nameDir, '.lock'),
      async (lockFd) => {
        const done = await readBuild(name, hash);
        if (done !== undefined) return done; // another process built it while we waited
        const mounts = await readMountinfo();
        // Holding the lock means no builder is alive (children hold it too): staging dirs are litter.
        for (const entry of await readdir(nameDir)) {
          if (entry.startsWith('.build-')) await removeUnlessMounted(nameDir, name, entry, mounts, log);
        }
        const staging = join(nameDir, `.build-${hash}-${process.pid}`);
        await mkdir(staging, { mode: 0o755 });
        const started = Date.now();
        log(`building template ${name} (${hash}) into ${staging}`);
        await build({
          recipe,
          recipeDir: join(opts.recipesDir, name),
          rootfs: join(staging, 'rootfs'),
          logFile: join(staging, 'build.log'),
          lockFd,
          log,
        });
        await chmod(join(staging, 'rootfs'), 0o755);
        const record: BuildRecord = {
          name,
          hash,
          builderVersion: BUILDER_VERSION,
          builtAt: new Date().toISOString(),
          buildSeconds: Math.round((Date.now() - started) / 100) / 10,
          description: recipe.description,
          limits: recipe.limits,
          defaultUser: {
            name: recipe.user.name,
            uid: recipe.user.uid,
            gid: recipe.user.gid,
            home: recipe.user.home,
          },
          env: recipe.env,
          ...(recipe.start && { start: recipe.start }),
          ...(recipe.runtime && { runtime: recipe.runtime }),
        };
        await writeFile(join(staging, 'build.json'), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
        // The rename publishes the build: make its content durable before the name appears.
        await syncFs(staging);
        await rename(staging, join(nameDir, hash));
        await setCurrent(nameDir, hash);
        const mountsNow = await readMountinfo();
        for (const entry of await readdir(nameDir)) {
          if (HASH_DIR_RE.test(entry) && entry !== hash)
            await pruneBuild(nameDir, name, entry, mountsNow, log);
        }
        recent.delete(name);
        log(`built template ${name} (${hash}) in ${record.buildSeconds}s`);
        const t = await readBuild(name, hash);
        if (t === undefined) throw new CoveError('internal', `template ${name}: build ${hash} vanished`);
        return t;
      },
      { timeoutMs: lockTimeoutMs },
    );
  };

  const ensure = async (name: string, eopts?: { log?: (line: string) => void }): Promise<Template> => {
    validateTemplateName(name);
    const recipe = await loadRecipe(opts.recipesDir, name);
    const hash = await recipeHash(name);
    const built = await readBuild(name, hash);
    if (built !== undefined) return built;
    const key = `${name}/${hash}`;
    let p = inflight.get(key);
    if (p === undefined) {
      p = buildLocked(name, recipe, hash, eopts?.log ?? (() => {})).finally(() => inflight.delete(key));
      inflight.set(key, p);
    }
    return p;
  };

  const list = async (): Promise<Template[]> => {
    let names: string[];
    try {
      names = await readdir(cacheDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    const out: Template[] = [];
    for (const name of names.sort()) {
      try {
        validateTemplateName(name);
        out.push(await get(name));
      } catch (err) {
        if (!isCoveError(err, 'not_found') && !isCoveError(err, 'invalid_argument')) throw err;
      }
    }
    return out;
  };

  const getBuild = async (name: string, hash: string): Promise<Template> => {
    validateTemplateName(name);
    if (!HASH_DIR_RE.test(hash)) throw new CoveError('not_found', `template ${name} has no build ${hash}`);
    const t = await readBuild(name, hash);
    if (t === undefined) throw new CoveError('not_found', `template ${name}: build ${hash} is gone`);
    return t;
  };

  return { get, ensure, list, getBuild };
}

/** `current` -> <hash>, replaced atomically. */
async function setCurrent(nameDir: string, hash: string): Promise<void> {
  const tmp = join(nameDir, `.current-${process.pid}`);
  await rm(tmp, { force: true });
  await symlink(hash, tmp);
  await rename(tmp, join(nameDir, 'current'));
}

async function readMountinfo(): Promise<string[]> {
  try {
    return (await readFile('/proc/self/mountinfo', 'utf8')).split('\n');
  } catch {
    return [];
  }
}

/**
 * Whether a mount references `<name>/<entry>`: as its mount point, as the root of a bind or
 * idmapped mount taken from it, or in its options (overlay lowerdir). Matched on the last
 * two path components so that it holds whether or not COVE_HOME is a file system of its own.
 */
export function referencedByMount(mounts: readonly string[], name: string, entry: string): boolean {
  const needle = `/${name}/${entry}`;
  return mounts.some((line) => {
    for (let i = line.indexOf(needle); i !== -1; i = line.indexOf(needle, i + 1)) {
      const next = line[i + needle.length];
      if (next === undefined || next === '/' || next === ' ' || next === ',' || next === ':') return true;
    }
    return false;
  });
}

async function removeUnlessMounted(
  nameDir: string,
  name: string,
  entry: string,
  mounts: readonly string[],
  log: (line: string) => void,
): Promise<void> {
  if (referencedByMount(mounts, name, entry)) {
    log(`keeping ${join(nameDir, entry)}: a mount references it`);
    return;
  }
  await rm(join(nameDir, entry), { recursive: true, force: true });
}

async function pruneBuild(
  nameDir: string,
  name: string,
  entry: string,
  mounts: readonly string[],
  log: (line: string) => void,
): Promise<void> {
  try {
    if ((await readdir(join(nameDir, entry, 'refs'))).length > 0) {
      log(`keeping old build ${join(nameDir, entry)}: refs/ is not empty`);
      return;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  await removeUnlessMounted(nameDir, name, entry, mounts, log);
}

function syncFs(path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('sync', ['-f', path], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve() : reject(new CoveError('internal', `sync -f ${path} failed (${code})`)),
    );
  });
}
