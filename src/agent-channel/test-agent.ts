/**
 * Test helper (not a test): builds cove-agent once and runs it as an ordinary host process
 * (subreaper mode) with its socket in a temporary directory.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const AGENT_BIN = join(REPO, 'agent/build/cove-agent');
export const TOKEN = 'test-token-0123456789abcdef';
export const ROOT = { uid: 0, gid: 0 };
export const NOBODY = { uid: 65534, gid: 65534 };

function has(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the agent tests cannot run here, or undefined when they can. */
export function skipReason(): string | undefined {
  if (!has('cc')) return 'no C compiler (cc): cannot build cove-agent';
  if (process.getuid?.() !== 0) return 'needs root (setuid, setfsuid, chown in the agent)';
  return undefined;
}

/** Test files run in parallel: flock keeps two makes from writing the binary at once. */
export function buildAgent(): void {
  execFileSync(
    'flock',
    ['/tmp/cove-agent-build.lock', 'make', '-s', '-C', join(REPO, 'agent'), 'build/cove-agent'],
    {
      stdio: 'inherit',
    },
  );
}

export interface RunningAgent {
  dir: string;
  socket: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export function startAgent(token = TOKEN): RunningAgent {
  const dir = mkdtempSync(join(tmpdir(), 'cove-agent-test-'));
  const socket = join(dir, 'agent.sock');
  const proc = spawn(AGENT_BIN, ['--socket', socket], {
    env: { COVE_AGENT_TOKEN: token, PATH: process.env.PATH ?? '/usr/bin:/bin' },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return {
    dir,
    socket,
    proc,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const SH_ENV = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/root', LANG: 'C' };
