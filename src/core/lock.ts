import { spawn } from 'node:child_process';
import { open } from 'node:fs/promises';
import { CoveError } from './errors.ts';

/**
 * An exclusive lock between processes, held by the kernel: flock(2) on an open file
 * description of `path`. Node has no flock binding, so util-linux's `flock` takes the lock on
 * a descriptor it inherits from us; the lock belongs to the open file description, which this
 * process keeps. The lock is therefore released when the last process holding the descriptor
 * exits, however it exits: no pid files, no stale locks. Children that must not outlive the
 * lock (mmdebstrap) are given the descriptor too (`fd` in fn), so that a build orphaned by a
 * killed builder keeps the lock until it ends, and nobody removes its staging dir under it.
 */
/**
 * Takes the lock and keeps it until release() (or this process's exit): for a lock held
 * for a whole lifetime, such as one Cove per instance.
 */
export async function holdLock(
  path: string,
  opts: { timeoutMs: number },
): Promise<{ release(): Promise<void> }> {
  const handle = await open(path, 'a', 0o644);
  try {
    await flock(handle.fd, opts.timeoutMs, path);
  } catch (err) {
    await handle.close();
    throw err;
  }
  return { release: () => handle.close() };
}

export async function withLock<T>(
  path: string,
  fn: (fd: number) => Promise<T>,
  opts: { timeoutMs: number },
): Promise<T> {
  const handle = await open(path, 'a', 0o644);
  try {
    await flock(handle.fd, opts.timeoutMs, path);
    return await fn(handle.fd);
  } finally {
    // Closing our descriptor releases the lock once no child holds a copy of it.
    await handle.close();
  }
}

function flock(fd: number, timeoutMs: number, path: string): Promise<void> {
  const seconds = Math.max(timeoutMs, 0) / 1000;
  return new Promise((resolve, reject) => {
    const child = spawn('flock', ['--exclusive', '--wait', seconds.toFixed(3), '3'], {
      stdio: ['ignore', 'ignore', 'pipe', fd],
    });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      if (stderr.length < 4096) stderr += chunk;
    });
    child.on('error', (err) =>
      reject(new CoveError('unavailable', `cannot run flock (util-linux) for ${path}`, { cause: err })),
    );
    child.on('close', (code) => {
      if (code === 0) resolve();
      else if (code === 1 && stderr === '') {
        reject(new CoveError('deadline_exceeded', `lock ${path} still held after ${seconds}s`));
      } else reject(new CoveError('internal', `flock ${path} failed (${code}): ${stderr.trim()}`));
    });
  });
}
