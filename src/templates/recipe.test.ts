import { chmod, cp, mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { HASH_LENGTH, hashRecipeDir, parseRecipe, validateTemplateName } from './recipe.ts';

const recipesDir = join(import.meta.dirname, '..', '..', 'templates');

describe('validateTemplateName', () => {
  it.each(['base', 'code-interpreter-v1', 'a', 'my.tmpl_2', 'x'.repeat(63)])('accepts %s', (name) => {
    expect(() => validateTemplateName(name)).not.toThrow();
  });
  it.each(['', 'Base', '-x', '.x', '_x', '../etc', 'a/b', 'a b', 'x'.repeat(64), 'é'])(
    'rejects %j',
    (name) => {
      expect(() => validateTemplateName(name)).toThrow(
        expect.objectContaining({ name: 'CoveError', code: 'invalid_argument' }),
      );
    },
  );
});

describe('parseRecipe', () => {
  const base = readFileSync(join(recipesDir, 'base', 'template.json'), 'utf8');

  it('parses the base recipe', () => {
    const r = parseRecipe('base', base);
    expect(r.user).toMatchObject({ name: 'user', uid: 1000, gid: 1000, home: '/home/user', sudo: true });
    expect(r.limits).toEqual({ cpus: 2, memoryMiB: 512, pids: 1024 });
    expect(r.packages).toEqual(
      expect.arrayContaining(['python3', 'nodejs', 'git', 'curl', 'sudo', 'iputils-ping']),
    );
    expect(r.env.LANG).toBe('C.UTF-8');
  });

  it('parses the code-interpreter-v1 recipe: its server is started at create and probed on 49999', () => {
    const text = readFileSync(join(recipesDir, 'code-interpreter-v1', 'template.json'), 'utf8');
    const r = parseRecipe('code-interpreter-v1', text);
    expect(r.packages).toEqual(expect.arrayContaining(['python3-ipykernel', 'python3-pandas']));
    expect(r.start).toMatchObject({ readyPort: 49999, log: '/tmp/code-interpreter.log', user: 'root' });
    expect(r.start?.command).toContain('/opt/cove/code-interpreter/main.py');
  });

  it('fills start defaults and rejects a bad start', () => {
    const withStart = (start: unknown) => JSON.stringify({ ...JSON.parse(base), start });
    expect(parseRecipe('base', withStart({ command: 'exec srv' })).start).toEqual({
      command: 'exec srv',
      log: '/tmp/cove-start.log',
      readyTimeoutMs: 60_000,
    });
    expect(parseRecipe('base', base).start).toBeUndefined();
    expect(parseRecipe('base', withStart({ command: 'x', user: 'root' })).start?.user).toBe('root');
    for (const start of [
      {},
      { command: '' },
      { command: 'x', readyPort: 0 },
      { command: 'x', log: 'rel' },
      { command: 'x', user: 'a b' },
    ]) {
      expect(() => parseRecipe('base', withStart(start)), JSON.stringify(start)).toThrow(
        expect.objectContaining({ code: 'invalid_argument' }),
      );
    }
  });

  it('takes a runtime backend, crun or runsc, and nothing else', () => {
    const withRuntime = (runtime: unknown) => JSON.stringify({ ...JSON.parse(base), runtime });
    expect(parseRecipe('base', base).runtime).toBeUndefined();
    expect(parseRecipe('base', withRuntime('runsc')).runtime).toBe('runsc');
    expect(() => parseRecipe('base', withRuntime('kata'))).toThrow(/runtime/);
  });

  it('rejects a recipe whose name differs from its folder', () => {
    expect(() => parseRecipe('other', base)).toThrow(/names base/);
  });

  it('rejects unknown fields and unsafe values', () => {
    const bad = (patch: object): unknown => {
      try {
        parseRecipe('base', JSON.stringify({ ...JSON.parse(base), ...patch }));
      } catch (err) {
        return err;
      }
      return undefined;
    };
    for (const patch of [
      { extra: 1 },
      { packages: ['python3; rm -rf /'] },
      { suite: 'bookworm --foo' },
      { sources: ['deb file:///x bookworm main'] },
      { variant: 'custom' },
      { limits: { cpus: 0, memoryMiB: 512, pids: 1024 } },
      { user: { name: 'user', uid: 0, gid: 1000, home: '/home/user', shell: '/bin/bash', sudo: true } },
    ]) {
      const err = bad(patch);
      expect(isCoveError(err, 'invalid_argument'), JSON.stringify(patch)).toBe(true);
    }
    expect(() => parseRecipe('base', '{')).toThrow(/not JSON/);
  });
});

describe('hashRecipeDir', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cove-recipe-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const make = async (name: string, files: [string, string][]): Promise<string> => {
    const d = join(dir, name);
    await mkdir(d, { recursive: true });
    for (const [rel, content] of files) {
      await mkdir(join(d, rel, '..'), { recursive: true });
      await writeFile(join(d, rel), content);
    }
    return d;
  };

  it('is stable, short hex, and independent of creation order and timestamps', async () => {
    const a = await make('a', [
      ['template.json', '{}'],
      ['hooks/customize01.sh', 'echo hi'],
    ]);
    const b = await make('b', [
      ['hooks/customize01.sh', 'echo hi'],
      ['template.json', '{}'],
    ]);
    const h = await hashRecipeDir(a);
    expect(h).toMatch(new RegExp(`^[0-9a-f]{${HASH_LENGTH}}$`));
    expect(await hashRecipeDir(a)).toBe(h);
    expect(await hashRecipeDir(b)).toBe(h);
  });

  it('changes with content, new files, renames, the executable bit, links and extra inputs', async () => {
    const d = await make('d', [['template.json', '{}']]);
    const seen = new Set([await hashRecipeDir(d)]);
    const expectNew = async (extra: string[] = []): Promise<void> => {
      const h = await hashRecipeDir(d, extra);
      expect(seen.has(h)).toBe(false);
      seen.add(h);
    };
    await writeFile(join(d, 'template.json'), '{ }');
    await expectNew();
    await writeFile(join(d, 'notes'), '');
    await expectNew();
    await chmod(join(d, 'notes'), 0o755);
    await expectNew();
    await symlink('notes', join(d, 'link'));
    await expectNew();
    await expectNew(['finalize v2']);
  });

  it('ignores __pycache__ folders', async () => {
    const d = await make('py', [['server/main.py', 'print(1)']]);
    const h = await hashRecipeDir(d);
    await mkdir(join(d, 'server', '__pycache__'));
    await writeFile(join(d, 'server', '__pycache__', 'main.cpython-311.pyc'), 'x');
    expect(await hashRecipeDir(d)).toBe(h);
  });

  it('hashes a copy of the base recipe like the original', async () => {
    const copy = join(dir, 'base');
    await cp(join(recipesDir, 'base'), copy, { recursive: true });
    expect(await hashRecipeDir(copy)).toBe(await hashRecipeDir(join(recipesDir, 'base')));
  });
});
