import { readFileSync } from 'node:fs';

/**
 * How the host mounts cgroups. crun refuses `hybrid` (v1 controllers plus a v2 tree at
 * /sys/fs/cgroup/unified); the driver then runs `crun create` in a private mount namespace
 * without the v2 tree, and crun uses the v1 controllers.
 */
export type CgroupMode = 'v2' | 'hybrid' | 'v1';

export function detectCgroupMode(mounts = readFileSync('/proc/mounts', 'utf8')): CgroupMode {
  const entries = mounts.split('\n').map((line) => line.split(' '));
  const typeAt = (path: string) => entries.find((e) => e[1] === path)?.[2];
  if (typeAt('/sys/fs/cgroup') === 'cgroup2') return 'v2';
  if (typeAt('/sys/fs/cgroup/unified') === 'cgroup2') return 'hybrid';
  return 'v1';
}

/** The directories that hold one sandbox's cgroup (`<parent>/<id>`), in every hierarchy of this host. */
export function cgroupDirs(
  mode: CgroupMode,
  parent: string,
  id: string,
  mounts = readFileSync('/proc/mounts', 'utf8'),
): string[] {
  if (mode === 'v2') return [`/sys/fs/cgroup/${parent}/${id}`];
  return mounts
    .split('\n')
    .map((line) => line.split(' '))
    .filter((e) => e[2] === 'cgroup' && e[1] !== undefined)
    .map((e) => `${e[1]}/${parent}/${id}`);
}
