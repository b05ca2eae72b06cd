import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../src/config/config.ts';
import { guestDir } from '../src/runtime/microvm/guest.ts';
import { canRunSandboxes } from './helpers.ts';

/**
 * Whether this host can run the microvm tests: QEMU and the guest kernel (scripts/setup.sh
 * installs and builds both). Under CI their absence is a failure, not a skip.
 */
export function microvmReady(config: Config): boolean {
  const ready = (() => {
    try {
      execFileSync('qemu-system-x86_64', ['--version']);
      return existsSync(join(guestDir(config.microvm.cacheDir), 'vmlinuz'));
    } catch {
      return false;
    }
  })();
  if (canRunSandboxes && !ready && process.env.CI === 'true')
    throw new Error('QEMU or the microVM guest is missing: scripts/setup.sh installs them');
  return ready;
}
