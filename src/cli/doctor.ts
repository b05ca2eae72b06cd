import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../config/config.ts';
import { detectCgroupMode } from '../runtime/oci/cgroups.ts';
import { describeAccelerator, probeHost } from '../runtime/microvm/accel.ts';
import { guestDir } from '../runtime/microvm/guest.ts';

/** One line of `cove doctor`: 'fail' stops the backend (or Cove) from running, 'warn' does not. */
export interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail';
  detail: string;
}

/** First line of a command's `--version`, or why it could not run. */
function version(file: string, args = ['--version']): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) =>
    execFile(file, args, { timeout: 10_000 }, (err, stdout, stderr) =>
      resolve(
        err
          ? {
              ok: false,
              text: (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'not installed' : stderr.trim(),
            }
          : { ok: true, text: `${stdout}${stderr}`.trim().split('\n')[0]! },
      ),
    ),
  );
}

const read = (path: string) => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

/**
 * What this host offers Cove, without starting it: the three backends' binaries, the microVM
 * accelerator and why (the canary boot that confirms hardware KVM happens at serve), and the
 * kernel features sandboxes need. `root` is the filesystem root probed (tests).
 */
export async function hostChecks(cacheDir: string, root = '/'): Promise<Check[]> {
  const [crun, runsc, qemu, qemuImg, nft] = await Promise.all([
    version('crun'),
    version('runsc'),
    version('qemu-system-x86_64'),
    version('qemu-img'),
    version('nft'),
  ]);
  const bin = (name: string, v: { ok: boolean; text: string }, missing: Check['status'], why: string) => ({
    name,
    status: v.ok ? ('ok' as const) : missing,
    detail: v.ok ? v.text : `${v.text}: ${why}`,
  });
  const accel = describeAccelerator(probeHost(root));
  const guest = guestDir(cacheDir);
  const userns = Number(read(join(root, 'proc/sys/user/max_user_namespaces')).trim() || '0');
  const filesystems = read(join(root, 'proc/filesystems'));
  return [
    { name: 'kernel', status: 'ok', detail: `Linux ${release()}, cgroups ${detectCgroupMode()}` },
    {
      name: 'root',
      status: process.getuid?.() === 0 ? 'ok' : 'warn',
      detail:
        process.getuid?.() === 0 ? 'running as root' : 'cove serve needs root (namespaces, cgroups, mounts)',
    },
    {
      name: 'user namespaces',
      status: userns > 0 ? 'ok' : 'fail',
      detail: `max_user_namespaces ${userns}`,
    },
    {
      name: 'overlayfs',
      status: /\toverlay$/m.test(filesystems) ? 'ok' : 'warn',
      detail: /\toverlay$/m.test(filesystems)
        ? 'available'
        : 'not listed in /proc/filesystems (module not loaded?)',
    },
    bin('nftables', nft, 'fail', 'sandboxes network policy needs nft'),
    bin('crun', crun, 'fail', 'the default backend; scripts/setup.sh installs it'),
    bin('runsc', runsc, 'warn', 'only the gVisor backend (--runtime runsc) needs it'),
    bin('qemu', qemu, 'warn', 'only the microvm backend needs it (qemu-system-x86)'),
    bin('qemu-img', qemuImg, 'warn', 'only the microvm backend needs it (qemu-utils)'),
    {
      name: 'microvm guest',
      status: existsSync(join(guest, 'vmlinuz')) ? 'ok' : 'warn',
      detail: existsSync(join(guest, 'vmlinuz'))
        ? `${read(join(guest, 'kernel-package')).trim() || 'kernel'} in ${guest}`
        : `not built yet (${guest}): built when the microvm backend is first used`,
    },
    {
      name: 'microvm accelerator',
      status: accel.name === 'kvm' ? 'ok' : 'warn',
      detail: `${accel.name}: ${accel.why}`,
    },
    {
      name: '/dev/net/tun',
      status: existsSync(join(root, 'dev/net/tun')) ? 'ok' : 'warn',
      detail: existsSync(join(root, 'dev/net/tun')) ? 'present' : 'missing: microVMs need a tap device',
    },
  ];
}

export function doctorCommand(): Command {
  return new Command('doctor')
    .description(
      'check what this host offers Cove: backends, the microVM accelerator and why, kernel features',
    )
    .option('--json', 'print the checks as JSON')
    .action(async (opts: { json?: boolean }) => {
      const checks = await hostChecks(loadConfig().microvm.cacheDir);
      if (opts.json) process.stdout.write(`${JSON.stringify(checks, null, 2)}\n`);
      else {
        const width = Math.max(...checks.map((c) => c.name.length));
        for (const c of checks)
          process.stdout.write(`${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.detail}\n`);
      }
      if (checks.some((c) => c.status === 'fail')) process.exitCode = 1;
    });
}
