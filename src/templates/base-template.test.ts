// Checks the real base template on this machine (built by scripts/setup.sh, so `npm test`
// always has one). Skipped when it is not built, except in CI, where that is a failure.
import { execFileSync } from 'node:child_process';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { createTemplateStore } from './store.ts';
import type { Template } from './store.ts';

const store = createTemplateStore({
  home: process.env.COVE_TEMPLATES_HOME || process.env.COVE_HOME || '/var/lib/cove',
  recipesDir: join(import.meta.dirname, '..', '..', 'templates'),
});
const base: Template | undefined = await store.get('base').catch((err: unknown) => {
  if (isCoveError(err, 'not_found')) return undefined;
  throw err;
});
const isRoot = process.getuid?.() === 0;
const inCi = process.env.CI === 'true';

describe.skipIf(base !== undefined || !inCi)('base template in CI', () => {
  it('is built (scripts/setup.sh, run by npm test, builds it)', () => {
    expect(base).toBeDefined();
  });
});

describe.skipIf(base === undefined)('built base template (skipped: not built; run scripts/setup.sh)', () => {
  const root = base?.rootfs ?? '/nonexistent';
  const chroot = (...args: string[]): string =>
    execFileSync('chroot', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 20_000 });

  it('has the metadata the runtime needs', () => {
    expect(base).toMatchObject({
      name: 'base',
      limits: { cpus: 2, memoryMiB: 512, pids: 1024 },
      defaultUser: { name: 'user', uid: 1000, gid: 1000, home: '/home/user' },
      env: { LANG: 'C.UTF-8' },
    });
  });

  it('is a root-owned 0755 directory', async () => {
    const st = await stat(root);
    expect(st.mode & 0o7777).toBe(0o755);
    expect(st.uid).toBe(0);
  });

  it('has user 1000 with a home it owns and passwordless sudo', async () => {
    expect(await readFile(join(root, 'etc/passwd'), 'utf8')).toMatch(
      /^user:x:1000:1000::\/home\/user:\/bin\/bash$/m,
    );
    const home = await stat(join(root, 'home/user'));
    expect([home.uid, home.gid]).toEqual([1000, 1000]);
    const sudoers = join(root, 'etc/sudoers.d/user');
    expect(await readFile(sudoers, 'utf8')).toBe('user ALL=(ALL:ALL) NOPASSWD:ALL\n');
    expect((await stat(sudoers)).mode & 0o777).toBe(0o440);
  });

  it('has python3, node, git, curl, sudo and ping, and ping carries no file capability', async () => {
    for (const bin of ['python3', 'node', 'git', 'curl', 'sudo', 'ping', 'ip', 'bash']) {
      expect(
        (await stat(join(root, 'usr/bin', bin)).catch(() => stat(join(root, 'bin', bin)))).isFile(),
      ).toBe(true);
    }
    expect(execFileSync('getcap', ['-r', root], { encoding: 'utf8' }).trim()).toBe('');
  });

  it('leaves the hostname to the runtime and resolves localhost without DNS', async () => {
    await expect(stat(join(root, 'etc/hostname'))).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await readFile(join(root, 'etc/hosts'), 'utf8')).toMatch(/^127\.0\.0\.1\s+localhost$/m);
    expect((await stat(join(root, 'etc/resolv.conf'))).isFile()).toBe(true);
  });

  it.skipIf(!isRoot)('runs python3, node and sudo (chroot; needs root)', () => {
    expect(chroot(root, 'python3', '-c', 'print(1)')).toBe('1\n');
    // `python` too, as in E2B's base image (python-is-python3): E2B's own tests run `python -m http.server`
    expect(chroot(root, 'python', '-c', 'import sys; print(sys.version_info[0])')).toBe('3\n');
    expect(chroot(root, 'node', '-e', 'console.log(1 + 1)')).toBe('2\n');
    expect(chroot(root, 'visudo', '-cqf', '/etc/sudoers.d/user')).toBe('');
    expect(chroot('--userspec=1000:1000', root, 'sudo', '-n', 'id', '-u')).toBe('0\n');
  });
});
