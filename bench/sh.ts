import { spawn } from 'node:child_process';
import { open, readFile } from 'node:fs/promises';

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a host command (no shell) and resolves when it exits, whatever its status. stdin is
 * /dev/null; output is collected only when asked, so that a detached container's process
 * never holds a pipe of ours.
 */
export function sh(file: string, args: readonly string[], opts: { capture?: boolean } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const capture = opts.capture ?? true;
    const child = spawn(file, args, {
      stdio: ['ignore', capture ? 'pipe' : 'ignore', capture ? 'pipe' : 'ignore'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Like sh(), but rejects unless the command exits 0. */
export async function must(
  file: string,
  args: readonly string[],
  opts: { capture?: boolean } = {},
): Promise<Ran> {
  const r = await sh(file, args, opts);
  if (r.code !== 0) {
    const detail = r.stderr.trim().split('\n').slice(-2).join(' | ');
    throw new Error(`${file} ${args.join(' ')} exited ${r.code}: ${detail}`);
  }
  return r;
}

/** Mount points at or under `dir` (from /proc/self/mountinfo). */
export async function mountsUnder(dir: string): Promise<string[]> {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .filter((mnt) => mnt === dir || mnt.startsWith(dir + '/'));
}

/**
 * Runs a host command with stdin read from `opts.stdin` and stdout written to `opts.stdout`
 * (paths; /dev/null when absent), stderr captured; rejects unless it exits 0. For moving a
 * file through a peer's exec.
 */
export async function mustRedirect(
  file: string,
  args: readonly string[],
  opts: { stdin?: string; stdout?: string },
): Promise<void> {
  const input = await open(opts.stdin ?? '/dev/null', 'r');
  const output = await open(opts.stdout ?? '/dev/null', 'w');
  try {
    const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(file, args, { stdio: [input.fd, output.fd, 'pipe'] });
      let err = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
      child.on('error', reject);
      child.on('close', (c) => resolve({ code: c, stderr: err }));
    });
    if (code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${code}: ${stderr.trim()}`);
  } finally {
    await input.close();
    await output.close();
  }
}
