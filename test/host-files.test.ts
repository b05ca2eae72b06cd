import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  closeSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostFiles } from '../src/agent-channel/host-files.ts';
import { canRunSandboxes } from './helpers.ts';

/**
 * The checks that stand between a sandbox and the host's root when the host writes a file the
 * agent opened (src/agent-channel/host-files.ts). A stand-in "agent" holds descriptors the way
 * a hostile one could name them in its FD answer: only a regular file on the sandbox's own root
 * overlay may be opened, and never for writing through a read-only mount.
 */
describe.skipIf(!canRunSandboxes)('host access to an agent’s open files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cove-host-files-'));
  const rootfs = join(dir, 'sandbox', 'rootfs');
  const other = join(dir, 'other', 'rootfs');
  const readOnly = join(dir, 'ro');
  const mounts: string[] = [];
  let holder: ChildProcess;
  const fds = { file: 3, outside: 4, fifo: 5, dir: 6, proc: 7, otherOverlay: 8, readOnly: 9, deleted: 10 };

  const overlay = (base: string, target: string): void => {
    for (const d of ['lower', 'upper', 'work']) mkdirSync(join(base, d), { recursive: true });
    mkdirSync(target, { recursive: true });
    const o = `lowerdir=${join(base, 'lower')},upperdir=${join(base, 'upper')},workdir=${join(base, 'work')}`;
    execFileSync('mount', ['-t', 'overlay', 'overlay', '-o', o, target]);
    mounts.unshift(target);
  };

  beforeAll(async () => {
    overlay(join(dir, 'sandbox'), rootfs);
    overlay(join(dir, 'other'), other);
    writeFileSync(join(dir, 'sandbox', 'lower', 'template.txt'), 'from the template\n');
    writeFileSync(join(rootfs, 'file.txt'), 'hello\n');
    writeFileSync(join(rootfs, 'gone.txt'), 'deleted\n');
    mkdirSync(join(rootfs, 'dir'));
    execFileSync('mkfifo', [join(rootfs, 'fifo')]);
    writeFileSync(join(other, 'other.txt'), 'another sandbox\n');
    writeFileSync(join(dir, 'outside.txt'), 'the host\n');
    mkdirSync(readOnly);
    execFileSync('mount', ['--bind', rootfs, readOnly]);
    mounts.unshift(readOnly);
    execFileSync('mount', ['-o', 'remount,bind,ro', readOnly]);
    const script = [
      `exec 3<>'${join(rootfs, 'file.txt')}' 4<'${join(dir, 'outside.txt')}' 5<>'${join(rootfs, 'fifo')}'`,
      `exec 6<'${join(rootfs, 'dir')}' 7</proc/version 8<'${join(other, 'other.txt')}'`,
      `exec 9<'${join(readOnly, 'template.txt')}' 10<'${join(rootfs, 'gone.txt')}'`,
      `rm '${join(rootfs, 'gone.txt')}'`,
      'echo ready',
      'exec sleep 600',
    ].join('\n');
    holder = spawn('bash', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      holder.stdout!.once('data', () => resolve());
      holder.once('exit', (code) => reject(new Error(`holder exited ${code}`)));
    });
    writeFileSync(join(dir, 'pid'), `${holder.pid}\n`);
  });

  afterAll(async () => {
    if (holder && holder.exitCode === null && holder.signalCode === null) {
      const gone = new Promise((resolve) => holder.once('exit', resolve));
      holder.kill('SIGKILL');
      await gone; // its descriptors keep the mounts busy until it is gone
    }
    for (const m of mounts) execFileSync('umount', [m]);
    rmSync(dir, { recursive: true, force: true });
  });

  const files = () => hostFiles({ pidFile: join(dir, 'pid'), rootfs });

  it('opens a regular file of the sandbox’s overlay, for reading and for writing', () => {
    const w = files().open(fds.file, 'w');
    expect(w).toBeTypeOf('number');
    writeSync(w!, Buffer.from('HELLO'), 0, 5, 0);
    closeSync(w!);
    expect(readFileSync(join(rootfs, 'file.txt'), 'utf8')).toBe('HELLO\n');
    const r = files().open(fds.file, 'r');
    const buf = Buffer.alloc(6);
    expect(readSync(r!, buf, 0, 6, 0)).toBe(6);
    closeSync(r!);
    expect(buf.toString()).toBe('HELLO\n');
    // A file the sandbox removed is still its own, on its overlay.
    const gone = files().open(fds.deleted, 'r');
    expect(gone).toBeTypeOf('number');
    expect(fstatSync(gone!).nlink).toBe(0);
    closeSync(gone!);
  });

  it('refuses anything else the agent could name', () => {
    for (const [name, fd] of Object.entries(fds)) {
      if (name === 'file' || name === 'deleted' || name === 'readOnly') continue;
      for (const mode of ['r', 'w'] as const)
        expect(files().open(fd, mode), `${name} ${mode}`).toBeUndefined();
    }
    for (const fd of [-1, 1.5, 2 ** 31, 99]) expect(files().open(fd, 'w'), String(fd)).toBeUndefined();
  });

  it('never opens for writing what a read-only mount of the overlay holds', () => {
    expect(files().open(fds.readOnly, 'w')).toBeUndefined();
    const r = files().open(fds.readOnly, 'r');
    expect(r).toBeTypeOf('number');
    closeSync(r!);
    expect(readFileSync(join(dir, 'sandbox', 'lower', 'template.txt'), 'utf8')).toBe('from the template\n');
  });

  it('refuses when the sandbox’s root is not an overlay mount or its process is gone', () => {
    const plain = join(dir, 'plain');
    mkdirSync(plain, { recursive: true });
    expect(hostFiles({ pidFile: join(dir, 'pid'), rootfs: plain }).open(fds.outside, 'r')).toBeUndefined();
    expect(hostFiles({ pidFile: join(dir, 'pid'), rootfs: other }).open(fds.file, 'w')).toBeUndefined();
    writeFileSync(join(dir, 'dead-pid'), '999999999\n');
    expect(hostFiles({ pidFile: join(dir, 'dead-pid'), rootfs }).open(fds.file, 'w')).toBeUndefined();
    expect(hostFiles({ pidFile: join(dir, 'missing'), rootfs }).open(fds.file, 'w')).toBeUndefined();
  });
});
