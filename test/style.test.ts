import { readdirSync, readFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { httpStatus } from '../src/core/errors.ts';

const root = join(import.meta.dirname, '..');

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}

describe('the code reads as STYLE.md says', () => {
  it('every src folder has a README', () => {
    const folders = readdirSync(join(root, 'src'), { withFileTypes: true }).filter(
      (e) => e.isDirectory() && e.name !== 'gen',
    );
    const missing = folders
      .filter((f) => !existsSync(join(root, 'src', f.name, 'README.md')))
      .map((f) => f.name);
    expect(missing).toEqual([]);
  });

  it('no source file is over 400 lines', () => {
    const long = [...files(join(root, 'src')), ...files(join(root, 'agent', 'src'))]
      .filter((f) => /\.(ts|c|h)$/.test(f) && statSync(f).isFile() && !f.includes('/src/gen/')) // generated
      .filter((f) => readFileSync(f, 'utf8').split('\n').length > 400)
      .map((f) => f.slice(root.length + 1));
    expect(long).toEqual([]);
  });

  it('every error code is documented', () => {
    const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8');
    for (const code of Object.keys(httpStatus)) expect(doc).toMatch(new RegExp(`^\\| ${code} +\\|`, 'm'));
  });
});
