import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { withLock } from './lock.ts';

describe('withLock', () => {
  let dir: string;
  let lockPath: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'cove-lock-'));
    lockPath = join(dir, '.lock');
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lets one holder in at a time', async () => {
    const events: string[] = [];
    const holder = (id: string) =>
      withLock(
        lockPath,
        async () => {
          events.push(`in ${id}`);
          await sleep(100);
          events.push(`out ${id}`);
          return id;
        },
        { timeoutMs: 5000 },
      );
    expect(await Promise.all([holder('a'), holder('b'), holder('c')])).toEqual(['a', 'b', 'c']);
    for (let i = 0; i < events.length; i += 2) {
      expect(events[i]?.slice(3)).toBe(events[i + 1]?.slice(4));
    }
  });

  it('times out with deadline_exceeded while another process holds it, and gets it once that process dies', async () => {
    // flock runs sleep as its child, which inherits the lock: kill the whole process group.
    const other = spawn('flock', ['--exclusive', lockPath, 'sleep', '30'], {
      stdio: 'ignore',
      detached: true,
    });
    const killOther = (): void => {
      try {
        process.kill(-other.pid!, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    try {
      await sleep(150); // let the other process take the lock
      await expect(withLock(lockPath, () => Promise.resolve(1), { timeoutMs: 200 })).rejects.toMatchObject({
        code: 'deadline_exceeded',
      });
      const waiting = withLock(lockPath, () => Promise.resolve('mine'), { timeoutMs: 5000 });
      killOther(); // no cleanup runs: the kernel drops the lock with the processes
      expect(await waiting).toBe('mine');
    } finally {
      killOther();
    }
  });

  it('stays held by a child that inherited the descriptor, after the holder returned', async () => {
    let child: ReturnType<typeof spawn> | undefined;
    await withLock(
      lockPath,
      (fd) => {
        child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', fd] });
        return Promise.resolve();
      },
      { timeoutMs: 1000 },
    );
    try {
      await expect(withLock(lockPath, () => Promise.resolve(1), { timeoutMs: 200 })).rejects.toMatchObject({
        code: 'deadline_exceeded',
      });
    } finally {
      child?.kill('SIGKILL');
    }
    expect(await withLock(lockPath, () => Promise.resolve(2), { timeoutMs: 5000 })).toBe(2);
  });

  it('releases the lock when fn throws', async () => {
    await expect(
      withLock(lockPath, () => Promise.reject(new Error('boom')), { timeoutMs: 1000 }),
    ).rejects.toThrow('boom');
    expect(await withLock(lockPath, () => Promise.resolve(3), { timeoutMs: 1000 })).toBe(3);
  });
});
