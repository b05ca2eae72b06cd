import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { canRunSandboxes } from './helpers.ts';
import { removeScratch } from './scratch-remove.ts';
import { scratchDir } from './scratch.ts';

describe('test scratch folders', () => {
  it('are made in the test file’s own temporary directory (test/tmp-check.ts)', () => {
    const dir = scratchDir('cove-scratch-');
    expect(dir.startsWith(`${tmpdir()}/cove-scratch-`)).toBe(true);
    expect(tmpdir()).toMatch(/\/cove-run-[^/]+\/f-[^/]+$/);
  });

  it.skipIf(!canRunSandboxes)(
    'are removed after unmounting what a failed test left mounted, never through the mount',
    async () => {
      const volume = scratchDir('cove-volume-');
      writeFileSync(join(volume, 'keep'), 'a volume’s file');
      const dir = scratchDir('cove-home-');
      mkdirSync(join(dir, 'mnt'));
      execFileSync('mount', ['--bind', volume, join(dir, 'mnt')]);
      await removeScratch(dir);
      expect(existsSync(dir)).toBe(false);
      expect(readdirSync(volume)).toEqual(['keep']); // what was mounted is untouched
    },
  );
});
