import { chmod, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { withLock } from '../../core/lock.ts';
import { buildWithMmdebstrap } from '../builder.ts';
import type { Recipe } from '../recipe.ts';
import { readLayer } from './layers.ts';
import type { Layer } from './run-build.ts';
import { baseKey } from './spec.ts';

/**
 * `debian:<suite>` (the SDK's fromDebianImage): no image registry is reachable from the hosts
 * Cove targets, Debian's archive is, so the image is built here with mmdebstrap, as Debian's
 * official images are built with debootstrap, plus Cove's finishing steps (finalize-rootfs.sh:
 * the default user `user` with sudo, hosts, resolv.conf). Built once per suite and cached as
 * a base layer; a change of the recipe below is a new key.
 */
function debianRecipe(suite: string): Recipe {
  return {
    name: `debian-${suite}`,
    description: `debian:${suite}`,
    suite,
    variant: 'minbase',
    sources: [`deb http://deb.debian.org/debian ${suite} main`],
    packages: ['bash', 'ca-certificates', 'sudo'],
    dpkgOptions: [],
    user: { name: 'user', uid: 1000, gid: 1000, home: '/home/user', shell: '/bin/bash', sudo: true },
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8' },
    limits: { cpus: 2, memoryMiB: 1024, pids: 1024 },
  };
}

export async function ensureDebianLayer(
  layersDir: string,
  suite: string,
  log: (line: string) => void,
): Promise<Layer> {
  const recipe = debianRecipe(suite);
  const key = baseKey('debian', JSON.stringify(recipe));
  const dir = join(layersDir, key);
  const read = () => readLayer(layersDir, key);
  const done = await read();
  if (done) return done;
  await mkdir(layersDir, { recursive: true, mode: 0o755 });
  return withLock(
    join(layersDir, `.debian-${suite}.lock`),
    async (lockFd) => {
      const again = await read();
      if (again) return again;
      const staging = join(layersDir, `.tmp-${key}-debian`);
      await rm(staging, { recursive: true, force: true });
      await mkdir(staging, { mode: 0o755 });
      await buildWithMmdebstrap({
        recipe,
        recipeDir: join(staging, 'none'),
        rootfs: join(staging, 'rootfs'),
        logFile: join(staging, 'build.log'),
        lockFd,
        log,
      });
      await chmod(join(staging, 'rootfs'), 0o755);
      const u = recipe.user;
      const layer: Layer = {
        key,
        rootfs: join(dir, 'rootfs'),
        ctx: { env: recipe.env, user: { name: u.name, uid: u.uid, gid: u.gid, home: u.home } },
      };
      await writeFile(join(staging, 'layer.json'), `${JSON.stringify(layer)}\n`);
      await rename(staging, dir);
      return layer;
    },
    { timeoutMs: 30 * 60_000 },
  );
}
