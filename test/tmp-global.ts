// vitest globalSetup: this run's temporary directory, COVE_TEST_TMP=/tmp/cove-run-XXXXXX,
// which test/tmp-check.ts gives each test file a directory in; removed at the end, and a run
// that leaves anything there (a file whose after-hooks never ran) says so and fails.
import { chmodSync, mkdtempSync, readdirSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { removeScratch } from './scratch-remove.ts';

export default function setup(): () => Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'cove-run-'));
  chmodSync(dir, 0o1777); // as /tmp is (test/tmp-check.ts)
  process.env.COVE_TEST_TMP = dir;
  return async () => {
    // A file whose tests were all skipped runs no after-hook: its own directory (f-*) stays,
    // empty, and is not a leftover. Anything with content is.
    const left = readdirSync(dir).filter(
      (name) => !(name.startsWith('f-') && readdirSync(join(dir, name)).length === 0),
    );
    for (const name of readdirSync(dir)) await removeScratch(join(dir, name));
    rmdirSync(dir);
    if (left.length > 0) throw new Error(`the test run left ${left.join(', ')} in ${dir} (removed now)`);
  };
}
