import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import { chooseAccelerator, probeHost, TCG_WARNING, type Accelerator } from './accel.ts';
import { GUEST_SCRIPT, initrdWithAgent } from './guest.ts';
import { createTemplateVms } from './template-vm.ts';
import type { Vms } from './vm.ts';

/**
 * What the microvm backend needs before its first VM, done once and only when it is first
 * used (a Cove that never runs a microVM pays nothing at start): QEMU checked, the guest
 * kernel and initramfs built if this host has none yet (scripts/microvm-guest.sh, ~20 s once),
 * this server's agent appended to the initramfs, half-made template VMs of a crash removed,
 * the accelerator chosen (a canary boot where the host has hardware KVM), saved VMs collected.
 */
export async function prepareBackend(deps: {
  qemu: string;
  vms: Vms;
  stateRoot: string;
  cacheDir: string;
  guest: string;
  initrd: string;
  agentBinary: string;
  requireKvm?: boolean;
  bootTimeoutMs: { kvm: number; tcg: number };
  log?: (msg: string, fields: Record<string, unknown>) => void;
  warn?: (msg: string, fields: Record<string, unknown>) => void;
}): Promise<{ accel: Accelerator; templates: ReturnType<typeof createTemplateVms> }> {
  const { vms, guest, initrd } = deps;
  const version = await run(deps.qemu, ['--version']).catch((err: unknown) => {
    throw new CoveError(
      'unavailable',
      `QEMU is not installed (apt-get install qemu-system-x86 qemu-utils): ${String(err)}`,
    );
  });
  if (!existsSync(join(guest, 'vmlinuz')) || !existsSync(join(guest, 'initrd.gz'))) {
    deps.log?.('microvm: building the guest kernel and initramfs (first use)', { guest });
    await run('bash', [GUEST_SCRIPT, dirname(deps.cacheDir)], { timeoutMs: 900_000 });
  }
  await initrdWithAgent(guest, deps.agentBinary, initrd);
  // Template VMs a crash left half-made (their saved VMs are published only when complete).
  for (const name of await readdir(deps.stateRoot).catch(() => [] as string[])) {
    if (!name.startsWith('.template-')) continue;
    await vms.destroy(name).catch(() => undefined);
    await rm(`/dev/shm/cove-vm-${name.slice('.template-'.length)}.mem`, { force: true });
  }
  const accel = await chooseAccelerator(probeHost(), () => canary(deps));
  if (deps.requireKvm && accel.name !== 'kvm')
    throw new CoveError('unavailable', `--require-kvm: no usable KVM on this host (${accel.why})`);
  deps.log?.('microvm backend ready', { accelerator: accel.name, host: accel.host, why: accel.why });
  if (accel.name === 'tcg') deps.warn?.(TCG_WARNING, { why: accel.why });
  const salt = createHash('sha256')
    .update(version.stdout)
    .update(await readFile(initrd))
    .update(await readFile(join(guest, 'vmlinuz')))
    .digest('hex');
  const templates = createTemplateVms({
    vms,
    cacheDir: deps.cacheDir,
    salt,
    bootTimeoutMs: deps.bootTimeoutMs[accel.name],
    onBuilt: (info) => deps.log?.('microvm: template VM saved', info),
  });
  return { accel, templates }; // the caller sweeps them (collect) now and every minute
}

/** Boots a VM with -accel kvm to its agent: a vCPU that runs proves nothing (DESIGN.md). */
async function canary(deps: Parameters<typeof prepareBackend>[0]): Promise<void> {
  const { vms } = deps;
  const id = `canary-${process.pid}`;
  const dir = join(deps.stateRoot, id);
  await mkdir(join(dir, 'run'), { recursive: true });
  try {
    await vms.launch(
      id,
      { bundleDir: dir },
      {
        accel: 'kvm',
        cpus: 1,
        memoryMiB: 256,
        kernel: join(deps.guest, 'vmlinuz'),
        initrd: deps.initrd,
        append: ['cove.canary=1'],
        agentSocket: join(dir, 'run', 'agent.sock'),
        qmpSocket: vms.qmpPath(id),
        consoleLog: join(dir, 'console.log'),
        paused: true,
      },
    );
    await vms.bootToAgent(id, deps.bootTimeoutMs.kvm);
  } finally {
    await vms.destroy(id).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}
