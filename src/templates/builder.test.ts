import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FINALIZE_SCRIPT, finalizeArgs, mmdebstrapArgs } from './builder.ts';
import { parseRecipe } from './recipe.ts';

const recipe = parseRecipe(
  'base',
  readFileSync(join(import.meta.dirname, '..', '..', 'templates', 'base', 'template.json'), 'utf8'),
);

describe('mmdebstrapArgs', () => {
  it('builds in unshare mode with the recipe as arguments, target before sources', () => {
    const args = mmdebstrapArgs(recipe, '/x/rootfs');
    expect(args.slice(0, 2)).toEqual(['--mode=unshare', '--variant=minbase']);
    expect(args).toContain(`--include=${recipe.packages.join(',')}`);
    expect(args).toContain('--dpkgopt=path-exclude=/usr/share/doc/*');
    expect(args.some((a) => a.startsWith('--hook-directory'))).toBe(false);
    const i = args.indexOf('bookworm');
    expect(args.slice(i)).toEqual(['bookworm', '/x/rootfs', ...recipe.sources]);
  });

  it('passes a hooks folder', () => {
    expect(mmdebstrapArgs(recipe, '/r', '/t/hooks')).toContain('--hook-directory=/t/hooks');
  });
});

describe('finalizeArgs', () => {
  it('hands the default user to finalize-rootfs.sh', () => {
    expect(finalizeArgs(recipe, '/r')).toEqual([
      FINALIZE_SCRIPT,
      '/r',
      'user',
      '1000',
      '1000',
      '/home/user',
      '/bin/bash',
      '1',
    ]);
  });
});
