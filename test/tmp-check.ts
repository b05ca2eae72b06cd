// A setup file of both test projects (vitest.config.ts): each test file gets a temporary
// directory of its own (TMPDIR, so os.tmpdir() and the programs a test starts use it) inside
// this run's (COVE_TEST_TMP, test/tmp-global.ts), and whatever a file leaves in it is named
// and removed after its last hook, never through a mount. With COVE_TEST_TMP_STRICT=1 (the
// unit project) a leftover fails the file; otherwise it is reported on stderr.
import { chmodSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { removeScratch } from './scratch-remove.ts';

// A worker runs many files with one process.env: the parent is read from COVE_TEST_TMP, never
// from TMPDIR, which the previous file set to its own (removed) directory.
process.env.COVE_TEST_TMP ??= tmpdir();
const dir = mkdtempSync(join(process.env.COVE_TEST_TMP, 'f-'));
// As /tmp is: any user may make files (programs a test runs as another user: postgres,
// QEMU), none may remove another's; a sandbox's mapped root reaches homes below it.
chmodSync(dir, 0o1777);
process.env.TMPDIR = dir;

// Made by Node itself (module.enableCompileCache), not by a test.
const NOT_A_TEST = new Set(['node-compile-cache']);

afterAll(async () => {
  const left = readdirSync(dir).filter((name) => !NOT_A_TEST.has(name));
  await removeScratch(dir);
  if (left.length === 0) return;
  const message = `this test file left ${left.length} entr${left.length === 1 ? 'y' : 'ies'} in its temporary directory (removed now): ${left.join(', ')}`;
  if (process.env.COVE_TEST_TMP_STRICT === '1') throw new Error(message);
  console.error(`\n*** ${message}\n`);
});
