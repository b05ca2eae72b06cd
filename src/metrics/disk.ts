import { lstat, readdir, statfs } from 'node:fs/promises';
import { join } from 'node:path';

/** A walk stops here: the sandbox owns the tree and could fill it with millions of entries. */
const MAX_ENTRIES = 200_000;

/**
 * Bytes a sandbox has written: the blocks of its overlay's upper dir (what it changed over
 * the template). Symbolic links are never followed (lstat), so the walk stays inside the
 * dir; past MAX_ENTRIES entries the sum is a lower bound.
 */
export async function diskUsed(dir: string): Promise<number> {
  let bytes = 0;
  let seen = 0;
  const pending = [dir];
  while (pending.length > 0 && seen < MAX_ENTRIES) {
    const current = pending.pop()!;
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch {
      continue; // removed while we walked, or not a directory any more
    }
    for (const entry of entries) {
      if (++seen > MAX_ENTRIES) break;
      const path = join(current, entry.name);
      if (entry.isDirectory()) pending.push(path);
      const st = await lstat(path).catch(() => undefined);
      if (st) bytes += st.blocks * 512;
    }
  }
  return bytes;
}

/** The size of the filesystem that holds `dir`: Cove sets no disk quota per sandbox, so this is its ceiling. */
export async function diskTotal(dir: string): Promise<number> {
  const st = await statfs(dir);
  return st.blocks * st.bsize;
}

/**
 * diskUsed of each dir at most once per `maxAgeMs`, the last figure in between: a walk is the
 * costliest part of a sample (a sandbox with 100,000 files costs a second of lstat), and
 * what a sandbox wrote changes more slowly than its cpu and memory.
 */
export function createDiskMeter(maxAgeMs: number, now: () => number = Date.now) {
  const cache = new Map<string, { at: number; bytes: number }>();
  return {
    async used(dir: string): Promise<number> {
      const hit = cache.get(dir);
      if (hit && now() - hit.at < maxAgeMs) return hit.bytes;
      const bytes = await diskUsed(dir);
      cache.set(dir, { at: now(), bytes });
      return bytes;
    },
    /** Drops a dir's figure (its sandbox stopped). */
    forget(dir: string): void {
      cache.delete(dir);
    },
  };
}
