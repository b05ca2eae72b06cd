import { createHash, randomBytes } from 'node:crypto';
import { existsSync, fstatSync } from 'node:fs';
import {
  mkdir,
  readFile,
  readdir,
  readlink,
  rename,
  rm,
  rmdir,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { withLock } from '../../core/lock.ts';
import { referencedByMount } from '../store.ts';
import type { TemplateLimits, TemplateStart } from '../store.ts';
import { linkTree } from './layers.ts';
import type { BuildResult } from './run-build.ts';

/**
 * Templates built through the API, beside the recipe-built ones in the template cache:
 * `<cache>/<name>/<hash>/{rootfs,build.json}` exactly as TemplateStore reads them, with the
 * `default` tag as the `current` link and any other tag as `tags/<tag>` -> `<hash>`. A build's
 * rootfs is its last layer, linked (linkTree): one lower dir, so a sandbox of a 20-step
 * template is created exactly like one of base, and the template outlives any layer GC.
 */
export interface BuiltTemplate {
  name: string;
  /** Tag -> build. */
  tags: Map<string, BuildInfo>;
}

/** build.json of an API-built template: TemplateStore's fields plus the build's own. */
export interface BuildInfo {
  name: string;
  hash: string;
  buildID: string;
  builtAt: string;
  limits: TemplateLimits;
  defaultUser: { name: string; uid: number; gid: number; home: string };
  env: Record<string, string>;
  start?: TemplateStart;
  workdir?: string;
  runtime?: string;
  /** Layer keys of the chain, base first: GC keeps these. */
  layers: string[];
  builderVersion: number;
  buildSeconds: number;
  description: string;
}

const HASH_DIR_RE = /^[0-9a-f]{16}$/;

export function createCatalog(opts: { cacheDir: string; recipesDir: string }) {
  const { cacheDir } = opts;
  const nameDir = (name: string) => join(cacheDir, name);

  const isRecipe = (name: string) => existsSync(join(opts.recipesDir, name, 'template.json'));

  const readInfo = async (name: string, hash: string): Promise<BuildInfo | undefined> => {
    try {
      const info = JSON.parse(await readFile(join(nameDir(name), hash, 'build.json'), 'utf8')) as BuildInfo;
      return info.buildID ? info : undefined;
    } catch {
      return undefined;
    }
  };

  const tagLinks = async (name: string): Promise<Map<string, string>> => {
    const out = new Map<string, string>();
    const current = await readlink(join(nameDir(name), 'current')).catch(() => undefined);
    if (current !== undefined && HASH_DIR_RE.test(current)) out.set('default', current);
    for (const tag of await readdir(join(nameDir(name), 'tags')).catch(() => [] as string[])) {
      const target = await readlink(join(nameDir(name), 'tags', tag)).catch(() => undefined);
      if (target !== undefined && HASH_DIR_RE.test(target)) out.set(tag, target);
    }
    return out;
  };

  const setTag = async (name: string, tag: string, hash: string) => {
    const link = tag === 'default' ? join(nameDir(name), 'current') : join(nameDir(name), 'tags', tag);
    if (tag !== 'default') await mkdir(join(nameDir(name), 'tags'), { recursive: true, mode: 0o755 });
    const tmp = `${link}.${randomBytes(4).toString('hex')}`;
    await symlink(hash, tmp);
    await rename(tmp, link);
  };

  /** Removes builds of `name` that no tag names and no mount uses; the name's folder once empty. */
  const prune = async (name: string): Promise<void> => {
    const linked = new Set((await tagLinks(name)).values());
    const mounts = (await readFile('/proc/self/mountinfo', 'utf8').catch(() => '')).split('\n');
    for (const entry of await readdir(nameDir(name)).catch(() => [] as string[])) {
      if (HASH_DIR_RE.test(entry) && !linked.has(entry) && !referencedByMount(mounts, name, entry))
        await rm(join(nameDir(name), entry), { recursive: true, force: true });
    }
    if (linked.size === 0) {
      await rm(join(nameDir(name), 'tags'), { recursive: true, force: true });
      const left = (await readdir(nameDir(name)).catch(() => [] as string[])).filter((e) => e !== '.lock');
      if (left.length === 0) {
        await rm(join(nameDir(name), '.lock'), { force: true });
        await rmdir(nameDir(name)).catch(() => {});
      }
    }
  };

  // prune() removes an emptied name's folder and lock file while holding the lock, so a
  // waiter can wake holding a lock on a file nobody else will ever open again: it checks the
  // path still names its locked file, and starts over if not.
  const locked = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const path = join(nameDir(name), '.lock');
    for (;;) {
      await mkdir(nameDir(name), { recursive: true, mode: 0o755 });
      const out = await withLock(
        path,
        async (fd) => {
          const current = await stat(path).catch(() => undefined);
          if (current?.ino !== fstatSync(fd).ino) return { stale: true as const };
          return { stale: false as const, value: await fn() };
        },
        { timeoutMs: 60_000 },
      );
      if (!out.stale) return out.value;
    }
  };

  return {
    isRecipe,

    /** Publishes a finished build under `name` with its tags; older untagged builds go. */
    async publish(p: {
      name: string;
      tags: string[];
      buildID: string;
      result: BuildResult;
      buildSeconds: number;
    }): Promise<BuildInfo> {
      const hash = createHash('sha256').update(p.buildID).digest('hex').slice(0, 16);
      const { layer } = p.result;
      const info: BuildInfo = {
        name: p.name,
        hash,
        buildID: p.buildID,
        builtAt: new Date().toISOString(),
        limits: p.result.limits,
        defaultUser: layer.ctx.user,
        env: layer.ctx.env,
        ...(p.result.start && { start: p.result.start }),
        ...(layer.ctx.workdir !== undefined && { workdir: layer.ctx.workdir }),
        ...(p.result.runtime && { runtime: p.result.runtime }),
        layers: p.result.chain,
        builderVersion: 1,
        buildSeconds: p.buildSeconds,
        description: `built through the API (build ${p.buildID})`,
      };
      return locked(p.name, async () => {
        const staging = join(nameDir(p.name), `.build-${hash}-${process.pid}`);
        await rm(staging, { recursive: true, force: true });
        await mkdir(staging, { mode: 0o755 });
        await linkTree(layer.rootfs, join(staging, 'rootfs'));
        await writeFile(join(staging, 'build.json'), `${JSON.stringify(info, null, 2)}\n`, { mode: 0o644 });
        await rename(staging, join(nameDir(p.name), hash));
        for (const tag of p.tags) await setTag(p.name, tag, hash);
        await prune(p.name);
        return info;
      });
    },

    /** API-built templates with their tags; recipe-built ones are not listed here. */
    async list(): Promise<BuiltTemplate[]> {
      const out: BuiltTemplate[] = [];
      for (const name of (await readdir(cacheDir).catch(() => [] as string[])).sort()) {
        if (name.startsWith('.') || isRecipe(name)) continue;
        const tags = new Map<string, BuildInfo>();
        for (const [tag, hash] of await tagLinks(name)) {
          const info = await readInfo(name, hash);
          if (info) tags.set(tag, info);
        }
        if (tags.size > 0) out.push({ name, tags });
      }
      return out;
    },

    async get(name: string): Promise<BuiltTemplate | undefined> {
      if (isRecipe(name)) return undefined;
      const tags = new Map<string, BuildInfo>();
      for (const [tag, hash] of await tagLinks(name)) {
        const info = await readInfo(name, hash);
        if (info) tags.set(tag, info);
      }
      return tags.size > 0 ? { name, tags } : undefined;
    },

    /** Points more tags at the build `tag` names. */
    async assignTags(name: string, fromTag: string, tags: string[]): Promise<BuildInfo> {
      return locked(name, async () => {
        const hash = (await tagLinks(name)).get(fromTag);
        const info = hash === undefined ? undefined : await readInfo(name, hash);
        if (!hash || !info) throw new CoveError('not_found', `template ${name}:${fromTag} does not exist`);
        for (const tag of tags) await setTag(name, tag, hash);
        return info;
      });
    },

    async removeTags(name: string, tags: string[]): Promise<void> {
      await locked(name, async () => {
        const links = await tagLinks(name);
        for (const tag of tags) {
          if (!links.has(tag)) throw new CoveError('not_found', `template ${name} has no tag ${tag}`);
        }
        for (const tag of tags)
          await rm(tag === 'default' ? join(nameDir(name), 'current') : join(nameDir(name), 'tags', tag), {
            force: true,
          });
        await prune(name);
      });
    },

    /**
     * Removes every tag of `name`: new sandboxes can no longer use it. A build still mounted by
     * a running sandbox stays on disk until that sandbox is gone (the next GC removes it).
     */
    async remove(name: string): Promise<void> {
      await locked(name, async () => {
        await rm(join(nameDir(name), 'current'), { force: true });
        await rm(join(nameDir(name), 'tags'), { recursive: true, force: true });
        await prune(name);
      });
    },

    /** prune() under the name's lock: GC (in any Cove sharing the cache) races builds. */
    prune: (name: string): Promise<void> => locked(name, () => prune(name)),

    /** Every folder of an API-built template, tagged or not (what GC prunes). */
    async names(): Promise<string[]> {
      const all = await readdir(cacheDir).catch(() => [] as string[]);
      return all.filter((n) => /^[a-z0-9][a-z0-9._-]{0,62}$/.test(n) && !isRecipe(n));
    },
  };
}

export type Catalog = ReturnType<typeof createCatalog>;
