// Temporary folders for tests, and the undo of each: a test removes what it made however it
// ends, and never through a mount (a removal through a mount deletes what is mounted there).
// test/tmp-check.ts fails a test file that leaves anything in its temporary folder.
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { removeScratch } from './scratch-remove.ts';

const forFile = new Set<string>();
// Registered as this module is first imported, at a test file's collection: runs after that
// file's own afterAll hooks (vitest runs after-hooks in reverse order of registration).
// Outside vitest (a bench that starts a test Cove: bench/proxy.ts) there is no file end: the
// caller removes what it made.
try {
  afterAll(async () => {
    for (const dir of forFile) await removeScratch(dir);
    forFile.clear();
  });
} catch {
  // not run by vitest
}

/**
 * A new folder in the temporary directory (`prefix` + 6 random characters), removed when the
 * current test finishes, or after the file's last hook when made outside a test (at
 * collection, in a beforeAll) or with `untilFileEnd` (a Cove's home: its server may outlive
 * the test that made it). `mode` 0o755 when a sandbox's mapped root must reach below it.
 */
export function scratchDir(prefix: string, opts: { mode?: number; untilFileEnd?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (opts.mode !== undefined) chmodSync(dir, opts.mode);
  try {
    if (opts.untilFileEnd) throw new Error('kept to the end of the file');
    onTestFinished(() => removeScratch(dir));
  } catch {
    forFile.add(dir); // not inside a test, or kept
  }
  return dir;
}
