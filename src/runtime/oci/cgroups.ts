import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';

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

/**
 * Freezes or thaws every process of a sandbox through its cgroup's freezer (v1 freezer.state,
 * v2 cgroup.freeze) and waits until the kernel says it is done: a v1 freeze passes through
 * FREEZING while tasks are still being stopped.
 */
export async function setFrozen(
  mode: CgroupMode,
  parent: string,
  id: string,
  frozen: boolean,
): Promise<void> {
  const [file, want] =
    mode === 'v2'
      ? [`/sys/fs/cgroup/${parent}/${id}/cgroup.freeze`, frozen ? '1' : '0']
      : [`/sys/fs/cgroup/freezer/${parent}/${id}/freezer.state`, frozen ? 'FROZEN' : 'THAWED'];
  const state = mode === 'v2' ? `/sys/fs/cgroup/${parent}/${id}/cgroup.events` : file;
  await writeFile(file, want);
  for (let i = 0; i < 500; i++) {
    const text = await readFile(state, 'utf8');
    const done = mode === 'v2' ? text.includes(`frozen ${want}`) : text.trim() === want;
    if (done) return;
    if (mode !== 'v2') await writeFile(file, want); // v1: a FREEZING that stalls is retried
    await new Promise((r) => setTimeout(r, 2));
  }
  throw new Error(`the cgroup of ${id} did not become ${want}`);
}

/** Whether a sandbox's cgroup is frozen (false when it has none). */
export async function isFrozen(mode: CgroupMode, parent: string, id: string): Promise<boolean> {
  const file =
    mode === 'v2'
      ? `/sys/fs/cgroup/${parent}/${id}/cgroup.events`
      : `/sys/fs/cgroup/freezer/${parent}/${id}/freezer.state`;
  const text = await readFile(file, 'utf8').catch(() => '');
  return mode === 'v2' ? text.includes('frozen 1') : text.trim() === 'FROZEN';
}
