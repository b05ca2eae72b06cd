// The undo of a test's temporary folder, never through a mount (a removal through a mount
// deletes what is mounted there). No vitest import: test/tmp-global.ts runs outside a test.
import { spawnSync } from 'node:child_process';
import { rm } from 'node:fs/promises';
import { mountsUnder } from '../src/volumes/sandbox-mounts.ts';

/** Unmounts what is mounted at or below `dir` (deepest first), then removes it; refuses (and
 * removes nothing) when a mount stays. */
export async function removeScratch(dir: string): Promise<void> {
  for (const m of (await mountsUnder(dir)).sort((a, b) => b.length - a.length))
    spawnSync('umount', [m], { stdio: 'ignore' });
  const still = await mountsUnder(dir);
  if (still.length > 0) throw new Error(`${dir} is not removed: ${still.join(', ')} still mounted there`);
  await rm(dir, { recursive: true, force: true });
}
