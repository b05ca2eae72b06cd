import { mkdir, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cgroupLayout } from '../../metrics/cgroup.ts';

/**
 * A sandbox VM's QEMU in the cgroup `<parent>/<id>` where Cove's metrics read every sandbox's
 * CPU time and memory (metrics/cgroup.ts: v1 cpuacct and memory, or the v2 tree): E2B's
 * getMetrics then reports the VM as the host pays for it (a clone's private pages, not its
 * template's shared RAM).
 */
function dirs(parent: string, id: string): string[] {
  const layout = cgroupLayout();
  if (!layout) return [];
  if (layout.kind === 'v2') return [join(layout.root, parent, id)];
  return [...new Set([join(layout.cpuacct, parent, id), join(layout.memory, parent, id)])];
}

export async function joinCgroup(parent: string, id: string, pid: number): Promise<void> {
  for (const dir of dirs(parent, id)) {
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'cgroup.procs'), String(pid));
  }
}

/** Removes the VM's cgroup once its QEMU is gone (an exiting process may hold it a moment). */
export async function removeCgroup(parent: string, id: string): Promise<void> {
  for (const dir of dirs(parent, id)) {
    for (let i = 0; ; i++) {
      try {
        await rmdir(dir);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') break;
        if (i >= 200) throw err;
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
}
