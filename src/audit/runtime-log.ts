import { closeSync, fstatSync, openSync, readSync } from 'node:fs';

/**
 * The last lines of a sandbox's runtime log (crun's output and the agent's stderr), at most
 * `maxBytes` of them. The sandbox's root can write to that file (it is PID 1's stderr), so
 * it is untrusted text: read from the end, bounded, never parsed. Synchronous because it
 * runs when a sandbox stops, before its directory is removed. Empty when there is no file.
 */
export function runtimeLogTail(path: string, maxBytes = 16 * 1024): string[] {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return [];
  }
  try {
    const size = fstatSync(fd).size;
    // One byte more than asked for: when it is a newline, the first line is whole.
    const start = Math.max(0, size - maxBytes - 1);
    const buf = Buffer.alloc(size - start);
    const read = readSync(fd, buf, 0, buf.length, start);
    const lines = buf.subarray(0, read).toString('utf8').split('\n');
    if (start > 0) lines.shift(); // a cut line, or the empty rest of a whole one
    return lines.map((l) => l.trimEnd()).filter((l) => l !== '');
  } finally {
    closeSync(fd);
  }
}
