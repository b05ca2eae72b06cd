import { existsSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * Resolves true once `path` exists (`present`) or is gone (`!present`), told by inotify on
 * its directory (node:fs watch) rather than by polling it; false after `timeoutMs` without
 * that. The runtimes' sockets come and go through host directories (an agent's socket in its
 * run directory: gVisor's gofer binds and unlinks it on the host), so the kernel tells of
 * each change the moment it happens: no fixed interval to wait out.
 */
export function untilFile(path: string, present: boolean, timeoutMs: number): Promise<boolean> {
  const there = () => existsSync(path) === present;
  return new Promise((resolve) => {
    const name = basename(path);
    let watcher: FSWatcher | undefined;
    const done = (ok: boolean) => {
      watcher?.close();
      clearTimeout(timer);
      resolve(ok);
    };
    const timer = setTimeout(() => done(there()), timeoutMs);
    try {
      // First the watch, then the look: a change between the two is seen by one of them.
      watcher = watch(dirname(path), (_event, file) => {
        if ((!file || file === name) && there()) done(true);
      });
      watcher.on('error', () => done(there()));
    } catch {
      return done(there()); // no directory to watch
    }
    if (there()) done(true);
  });
}
