import type { Manager } from '../manager/manager.ts';
import { Tail } from './jobs.ts';

export interface ShellResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/**
 * Runs a short script in a sandbox (`bash -c`) and collects what it prints: the desktop
 * tools' xdotool and scrot calls. It is killed after `timeoutMs`, or when `signal` aborts.
 */
export async function shell(
  manager: Manager,
  id: string,
  script: string,
  opts: { user?: string; env?: Record<string, string>; timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<ShellResult> {
  const stdout = new Tail();
  const stderr = new Tail();
  let settle!: (code: number) => void;
  const exited = new Promise<number>((resolve) => (settle = resolve));
  const proc = await manager.exec(
    id,
    {
      argv: ['/bin/bash', '-c', script],
      ...(opts.user !== undefined && { user: opts.user }),
      env: opts.env ?? {},
    },
    {
      onData: (stream, data) => (stream === 'stderr' ? stderr : stdout).push(data),
      onExit: (exit) => settle(exit.exitCode),
      onDetach: () => settle(-1),
    },
  );
  const kill = () => void proc.signal('SIGKILL').catch(() => undefined);
  const timer = setTimeout(kill, opts.timeoutMs ?? 30_000);
  opts.signal?.addEventListener('abort', kill, { once: true });
  try {
    const exitCode = await exited;
    return { stdout: stdout.text(), stderr: stderr.text(), exitCode };
  } finally {
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', kill);
  }
}
