import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withLock } from '../../core/lock.ts';
import { createCatalog } from './catalog.ts';
import type { BuildResult } from './run-build.ts';

// Every Cove on a host shares the template cache, so one server's GC prunes while another
// publishes the same name (CI once failed a build with ENOENT on its staging folder).
describe('the template catalog under concurrent GC', () => {
  let dir: string;
  let catalog: ReturnType<typeof createCatalog>;
  let result: BuildResult;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cove-catalog-'));
    await mkdir(join(dir, 'layer', 'etc'), { recursive: true });
    await writeFile(join(dir, 'layer', 'etc', 'hostname'), 'x\n');
    await mkdir(join(dir, 'cache'));
    catalog = createCatalog({ cacheDir: join(dir, 'cache'), recipesDir: join(dir, 'recipes') });
    result = {
      layer: {
        rootfs: join(dir, 'layer'),
        ctx: { user: { name: 'user', uid: 1000, gid: 1000, home: '/home/user' }, env: {} },
      },
      limits: { cpuCount: 1, memoryMB: 512 },
      chain: ['k1'],
    } as unknown as BuildResult;
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const publish = (name: string, buildID: string) =>
    catalog.publish({ name, tags: ['default'], buildID, result, buildSeconds: 1 });

  it('prunes only under the name lock: an empty folder a build holds stays until it lets go', async () => {
    const nameDir = join(dir, 'cache', 'held');
    await mkdir(nameDir);
    let pruned: Promise<void> | undefined;
    await withLock(
      join(nameDir, '.lock'),
      async () => {
        pruned = catalog.prune('held');
        await sleep(150);
        expect(existsSync(nameDir)).toBe(true);
      },
      { timeoutMs: 5_000 },
    );
    await pruned;
    expect(existsSync(nameDir)).toBe(false);
  });

  it('a build waiting on a lock whose file a prune removed starts over and publishes', async () => {
    const nameDir = join(dir, 'cache', 'raced');
    await mkdir(nameDir);
    let published: ReturnType<typeof publish> | undefined;
    await withLock(
      join(nameDir, '.lock'),
      async () => {
        published = publish('raced', 'b1');
        await sleep(150);
        // What prune() does to an emptied name while it holds the lock.
        await rm(join(nameDir, '.lock'));
        await rmdir(nameDir);
      },
      { timeoutMs: 5_000 },
    );
    const info = await published;
    expect(info?.name).toBe('raced');
    expect((await catalog.list()).map((t) => t.name)).toContain('raced');
  });

  it('survives publishes and GC prunes of the same names interleaved', async () => {
    const names = Array.from({ length: 20 }, (_, i) => `n${i}`);
    await Promise.all([
      ...names.map((n, i) => publish(n, `id${i}`)),
      ...names.map((n) => catalog.prune(n)),
      ...names.map((n) => catalog.prune(n)),
    ]);
    expect((await catalog.list()).map((t) => t.name).sort()).toEqual(expect.arrayContaining(names));
  });
});
