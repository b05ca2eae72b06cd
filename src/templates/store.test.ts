import { cp, mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BuildFn, BuildRequest } from './builder.ts';
import { createTemplateStore, referencedByMount } from './store.ts';

/** Stands in for mmdebstrap: a rootfs with one file naming the recipe's description. */
function fakeBuilder(delayMs = 0): { build: BuildFn; calls: BuildRequest[] } {
  const calls: BuildRequest[] = [];
  const build: BuildFn = async (req) => {
    calls.push(req);
    await sleep(delayMs);
    await mkdir(join(req.rootfs, 'etc'), { recursive: true, mode: 0o700 });
    await writeFile(join(req.rootfs, 'etc', 'built'), req.recipe.description);
    req.log('fake build done');
  };
  return { build, calls };
}

describe('createTemplateStore', () => {
  let dir: string;
  let home: string;
  let recipesDir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cove-store-'));
    home = join(dir, 'home');
    recipesDir = join(dir, 'templates');
    await cp(join(import.meta.dirname, '..', '..', 'templates', 'base'), join(recipesDir, 'base'), {
      recursive: true,
    });
    // A recipe of its own: with the real base recipe's hash, pruning would see the real
    // template's mounts (sandboxes of tests running beside this one) and keep the build.
    await setDescription(`store test ${dir}`);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const setDescription = async (description: string): Promise<void> => {
    const file = join(recipesDir, 'base', 'template.json');
    const recipe = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
    await writeFile(file, JSON.stringify({ ...recipe, description }));
  };

  it('validates names and reports unknown or unbuilt templates as not_found', async () => {
    const store = createTemplateStore({ home, recipesDir, build: fakeBuilder().build });
    await expect(store.get('../x')).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(store.ensure('Base')).rejects.toMatchObject({ code: 'invalid_argument' });
    await expect(store.get('nope')).rejects.toMatchObject({ code: 'not_found' });
    await expect(store.ensure('nope')).rejects.toMatchObject({ code: 'not_found' });
    await expect(store.get('base')).rejects.toMatchObject({ code: 'not_found', message: /not built/ });
    expect(await store.list()).toEqual([]);
  });

  it('builds once, publishes under the recipe hash, and returns the cached build after', async () => {
    const { build, calls } = fakeBuilder();
    const store = createTemplateStore({ home, recipesDir, build });
    const lines: string[] = [];
    const t = await store.ensure('base', { log: (l) => lines.push(l) });
    expect(calls).toHaveLength(1);
    expect(lines).toContain('fake build done');
    expect(t).toMatchObject({
      name: 'base',
      rootfs: join(home, 'templates', 'base', t.hash, 'rootfs'),
      limits: { cpus: 2, memoryMiB: 512, pids: 1024 },
      defaultUser: { name: 'user', uid: 1000, gid: 1000, home: '/home/user' },
      env: { LANG: 'C.UTF-8' },
    });
    expect((await stat(t.rootfs)).mode & 0o777).toBe(0o755);
    expect(await store.get('base')).toEqual(t);
    expect(await store.list()).toEqual([t]);
    expect(await store.ensure('base')).toEqual(t);
    expect(await createTemplateStore({ home, recipesDir, build }).ensure('base')).toEqual(t);
    expect(calls).toHaveLength(1);
    const entries = await readdir(join(home, 'templates', 'base'));
    expect(entries.sort()).toEqual(['.lock', 'current', t.hash].sort());
  });

  it('rebuilds when the recipe changes and prunes the old build', async () => {
    const { build, calls } = fakeBuilder();
    const store = createTemplateStore({ home, recipesDir, build });
    const first = await store.ensure('base');
    await setDescription('changed');
    await expect(store.get('base')).rejects.toMatchObject({ code: 'not_found' });
    const second = await store.ensure('base');
    expect(second.hash).not.toBe(first.hash);
    expect(calls).toHaveLength(2);
    expect(await readFile(join(second.rootfs, 'etc', 'built'), 'utf8')).toBe('changed');
    await expect(stat(first.rootfs)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('keeps an old build whose refs/ is not empty', async () => {
    const { build } = fakeBuilder();
    const store = createTemplateStore({ home, recipesDir, build });
    const first = await store.ensure('base');
    await mkdir(join(first.rootfs, '..', 'refs'));
    await writeFile(join(first.rootfs, '..', 'refs', 'sandbox-1'), '');
    await setDescription('changed');
    const lines: string[] = [];
    await store.ensure('base', { log: (l) => lines.push(l) });
    expect((await stat(first.rootfs)).isDirectory()).toBe(true);
    expect(lines.some((l) => l.includes('refs/ is not empty'))).toBe(true);
  });

  it('builds once when several stores (as in several processes) ensure at the same time', async () => {
    const { build, calls } = fakeBuilder(200);
    const stores = [1, 2, 3].map(() => createTemplateStore({ home, recipesDir, build }));
    const results = await Promise.all([...stores, stores[0]!].map((s) => s.ensure('base')));
    expect(calls).toHaveLength(1);
    expect(new Set(results.map((r) => r.hash)).size).toBe(1);
  });

  it('removes what a failed build left and leaves nothing published', async () => {
    const failing: BuildFn = async (req) => {
      await mkdir(req.rootfs);
      throw new Error('mirror unreachable');
    };
    await expect(createTemplateStore({ home, recipesDir, build: failing }).ensure('base')).rejects.toThrow(
      'mirror unreachable',
    );
    const nameDir = join(home, 'templates', 'base');
    expect((await readdir(nameDir)).filter((e) => e.startsWith('.build-'))).toHaveLength(1);
    const { build } = fakeBuilder();
    const t = await createTemplateStore({ home, recipesDir, build }).ensure('base');
    expect((await readdir(nameDir)).sort()).toEqual(['.lock', 'current', t.hash].sort());
  });

  it('reuses a get result only while its build exists', async () => {
    const store = createTemplateStore({ home, recipesDir, build: fakeBuilder().build });
    const t = await store.ensure('base');
    expect(await store.get('base')).toEqual(t);
    await rm(join(t.rootfs, '..'), { recursive: true });
    await expect(store.get('base')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('serves the last build of a name whose recipe is gone', async () => {
    const store = createTemplateStore({ home, recipesDir, build: fakeBuilder().build });
    const t = await store.ensure('base');
    await rm(join(recipesDir, 'base'), { recursive: true });
    expect(await store.get('base')).toEqual(t);
  });
});

describe('referencedByMount', () => {
  const mounts = [
    '36 1 254:0 / / rw,relatime - ext4 /dev/vda rw',
    '90 36 254:0 /var/lib/cove/templates/base/0123456789abcdef/rootfs /run/cove/s1/lower rw,idmapped - ext4 /dev/vda rw',
    '91 36 0:50 / /run/cove/s2/root rw - overlay overlay rw,lowerdir=/srv/templates/py/fedcba9876543210/rootfs,upperdir=/u',
  ];
  it('finds a build used as a mount root or in overlay options', () => {
    expect(referencedByMount(mounts, 'base', '0123456789abcdef')).toBe(true);
    expect(referencedByMount(mounts, 'py', 'fedcba9876543210')).toBe(true);
  });
  it('does not match a prefix of another name or hash', () => {
    expect(referencedByMount(mounts, 'base', '0123456789abcde')).toBe(false);
    expect(referencedByMount(mounts, 'ase', '0123456789abcdef')).toBe(false);
  });
});
