import { mkdtemp, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { create } from 'tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkUploadTar } from './tar-check.ts';

describe('checkUploadTar', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cove-tar-'));
    await mkdir(join(dir, 'ctx', 'app', 'sub'), { recursive: true });
    await writeFile(join(dir, 'ctx', 'app', 'a.txt'), 'a');
    await symlink('../a.txt', join(dir, 'ctx', 'app', 'sub', 'ok'));
    await symlink('/etc/passwd', join(dir, 'ctx', 'abs'));
    await symlink('../../etc', join(dir, 'ctx', 'app', 'out'));
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  const pack = async (name: string, files: string[], opts: { prefix?: string } = {}) => {
    const file = join(dir, name);
    await create({ file, gzip: true, cwd: join(dir, 'ctx'), ...opts }, files);
    return file;
  };

  it('accepts files, folders and links that stay inside', async () => {
    await expect(checkUploadTar(await pack('ok.tgz', ['app/a.txt', 'app/sub/ok']))).resolves.toBeUndefined();
  });

  it('accepts absolute and escaping symbolic links (resolved in the sandbox, as E2B copies them)', async () => {
    await expect(checkUploadTar(await pack('abs.tgz', ['abs', 'app/out']))).resolves.toBeUndefined();
  });

  it('refuses paths with ..', async () => {
    await expect(checkUploadTar(await pack('dots.tgz', ['app/a.txt'], { prefix: '../..' }))).rejects.toThrow(
      /leaves the destination/,
    );
  });

  it('refuses what is not a tar', async () => {
    await writeFile(join(dir, 'junk'), 'not a tar at all'.repeat(100));
    await expect(checkUploadTar(join(dir, 'junk'))).rejects.toThrow(/not a valid tar/);
  });
});
