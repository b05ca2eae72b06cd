import { execFile, spawn } from 'node:child_process';
import { CoveError } from './errors.ts';
import { runnerAvailable, runThroughHelper } from './runner.ts';

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a host command (never through a shell) and resolves with its output, or rejects with
 * a CoveError('internal') that quotes the command and the first line of its stderr.
 */
export function run(
  file: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<RunResult> {
  if (runnerAvailable() && opts.env === undefined) return runFast(file, args, opts);
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 << 20, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        if (err) {
          const detail = (stderr || err.message).trim().split('\n').slice(-2).join(' ');
          reject(new CoveError('internal', `${file} ${args.join(' ')}: ${detail}`, { cause: err }));
        } else resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** run() through the cove-run helper (runner.ts): the same results and errors, no fork of the server. */
async function runFast(file: string, args: readonly string[], opts: { input?: string; timeoutMs?: number }) {
  const fail = (detail: string, cause?: unknown) =>
    new CoveError('internal', `${file} ${args.join(' ')}: ${detail}`, { cause });
  const ended = await runThroughHelper(file, args, {
    ...(opts.input !== undefined && { input: opts.input }),
    timeoutMs: opts.timeoutMs ?? 30_000,
  }).catch((err: unknown) => {
    throw fail(String((err as Error).message), err);
  });
  if (ended.code === 0) return { stdout: ended.stdout, stderr: ended.stderr };
  const status = ended.signal ? `killed by signal ${ended.signal}` : `exited with code ${ended.code}`;
  throw fail((ended.stderr || status).trim().split('\n').slice(-2).join(' '));
}

/** Like run(), but with stdout/stderr inherited: for long builds whose progress a user watches. */
export function runInherited(file: string, args: readonly string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit'] });
    child.on('error', reject);
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new CoveError('internal', `${file} ${args.join(' ')} exited ${code}`)),
    );
  });
}
