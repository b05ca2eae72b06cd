import { closeSync, openSync, readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { runnerAvailable, runnerPath, runThroughHelper } from '../../core/runner.ts';

/**
 * Flags of every runsc command (docs/runtimes.md). `--host-uds=all` lets the agent bind its
 * socket in the bind-mounted /.cove/run as a host socket the host can connect to (gVisor
 * refuses host sockets otherwise; with `create` alone the agent's bind fails with EPERM). `--overlay2=none`: writes go to the overlay Cove mounted,
 * on disk (a fork copies it), not to a memory overlay inside the Sentry. ptrace platform and
 * `--network=sandbox` (gVisor's own network stack on the namespace's eth0) are the defaults.
 */
export const FLAGS = ['--host-uds=all', '--overlay2=none'];

/**
 * runsc's root-namespace guard checks only that /proc/sys/net/core/rmem_default exists,
 * which is true in every network namespace on recent kernels, so start/run/restore refuse
 * ("cannot run with network enabled in root network namespace") unless /proc/sys/net is
 * hidden from them; a tmpfs over /proc/sys/net/core is not enough. runsc must still run in
 * the root network namespace: its control socket is bound in the caller's namespace.
 * `restore` also makes the sandbox process, which mounts a fresh proc inside the sandbox's
 * user namespace; the kernel allows that only while some proc mount is fully visible (no
 * mount over any part of it), hence a second, untouched proc (`visibleProc`) beside the hidden one.
 * Returns the command line that runs `runsc <global> <args>` so: through cove-run's
 * `--hide-proc-sys-net` when built (one program), else unshare, sh and two mounts (~15-20 ms more).
 */
export function hidingProcSysNet(
  runsc: string,
  global: string[],
  visibleProc: string,
  args: string[],
): [string, string[]] {
  const helper = runnerPath();
  if (helper) return [helper, ['--hide-proc-sys-net', visibleProc, runsc, ...global, ...args]];
  const script = `mount -t tmpfs none /proc/sys/net && mount -t proc proc ${visibleProc} && exec "$@"`;
  return ['unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', runsc, ...global, ...args]];
}

/**
 * Runs runsc with its stdio on `<bundle>/runtime.log`: for create and restore that file is
 * the container's stdio too (the agent's stderr), which PID 1 must hold instead of a pipe
 * of ours, and which gVisor writes at its own offset (so nothing else writes it later).
 * Through cove-run when built: the sandbox and gofer processes runsc leaves behind are then
 * its children, reaped the moment they exit (agent/run/cove-run.c); `runsc delete` and
 * `kill` wait for that, ~1.2 s when the host's PID 1 is the reaper.
 */
export async function runLogged(
  what: string,
  file: string,
  argv: string[],
  bundleDir: string,
): Promise<void> {
  const log = join(bundleDir, 'runtime.log');
  const code = runnerAvailable()
    ? (await runThroughHelper(file, argv, { log })).code
    : await new Promise<number | null>((resolve, reject) => {
        const fd = openSync(log, 'a', 0o600);
        const child = spawn(file, argv, { stdio: ['ignore', fd, fd] });
        closeSync(fd);
        child.on('error', reject);
        child.on('exit', resolve);
      });
  if (code === 0) return;
  const tail = readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ');
  throw new CoveError('internal', `runsc ${what} failed (${code}): ${tail}`);
}
