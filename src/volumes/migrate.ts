import { rename, rm, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../core/exec.ts';
import { isMountPoint, unmountImage } from './image.ts';

/**
 * Moves a volume kept as a plain `data/` directory (Cove before volume images) into a
 * filesystem image of its own, once, at start: the image is made beside it under a temporary
 * name, filled with `cp -a` (owners, modes, times, xattrs), and renamed into place only when
 * complete, so a crash leaves either the old directory or the finished image. Room: the
 * quota, or what the files already take when that is more.
 */
export async function migrateToImage(
  home: string,
  imageName: string,
  sizeLimitBytes: number,
  makeImage: (file: string, at: string, bytes: number) => Promise<void>,
): Promise<void> {
  const data = join(home, 'data');
  const staging = join(home, 'migrating');
  const temp = join(home, `${imageName}.tmp`);
  await unmountImage(staging);
  const used = Number((await run('du', ['-sb', data])).stdout.split('\t')[0]) || 0;
  await makeImage(temp, staging, Math.max(sizeLimitBytes, Math.ceil(used * 1.1)));
  try {
    await run('cp', ['-a', `${data}/.`, `${staging}/`]);
  } finally {
    await unmountImage(staging);
  }
  await rename(temp, join(home, imageName));
  if (await isMountPoint(data)) return;
  await rm(data, { recursive: true, force: true });
  await rmdir(staging).catch(() => undefined); // an empty mount point: never removed recursively
}
