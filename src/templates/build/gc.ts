import { readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';

/**
 * Removes layers that no published template is made of (`keep`) and that no build has made or
 * reused for `ttlMs` (a layer's layer.json is touched at each reuse), plus what a killed build
 * left (`.tmp-*`, `.trash-*`) once as old, unless a mount still uses it (a build sandbox's lower
 * layer). The TTL keeps the layers of a failed build for its next try, and keeps a build in
 * progress in another Cove process sharing the cache safe from this one's GC.
 */
export async function collectLayers(
  layersDir: string,
  keep: ReadonlySet<string>,
  ttlMs: number,
): Promise<string[]> {
  const mounts = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const removed: string[] = [];
  const old = async (path: string) => {
    const st = await stat(path).catch(() => undefined);
    return st === undefined || Date.now() - st.mtimeMs > ttlMs;
  };
  for (const entry of await readdir(layersDir).catch(() => [] as string[])) {
    if (keep.has(entry) || mounts.includes(`/.layers/${entry}/`)) continue;
    if (/^[0-9a-f]{32}$/.test(entry)) {
      if (!(await old(join(layersDir, entry, 'layer.json')))) continue;
    } else if (entry.startsWith('.tmp-') || entry.startsWith('.trash-')) {
      if (!(await old(join(layersDir, entry)))) continue;
    } else continue;
    await rm(join(layersDir, entry), { recursive: true, force: true });
    removed.push(entry);
  }
  return removed;
}
