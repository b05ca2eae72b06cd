import { closeSync, constants, existsSync, openSync, readFileSync } from 'node:fs';

/**
 * What the host offers for running VMs (DESIGN.md, MicroVMs): 'kvm' is hardware virtualisation
 * (kvm_intel/kvm_amd loaded, or vmx/svm in cpuinfo, and /dev/kvm opens); 'pvm' is a /dev/kvm
 * backed by PVM (software nested virtualisation, /sys/module/kvm_pvm), on which Debian's
 * kernels abort or crawl; 'none' has no /dev/kvm. Only 'kvm' is worth a canary boot.
 */
export type HostVirt = 'kvm' | 'pvm' | 'none';

export interface Accelerator {
  /** What QEMU runs with: `-accel kvm`, or its software CPU (TCG). */
  name: 'kvm' | 'tcg';
  host: HostVirt;
  /** One sentence for the startup log, `cove doctor` and get-info. */
  why: string;
}

export function probeHost(root = '/'): HostVirt {
  const at = (p: string) => `${root}${p}`;
  if (!existsSync(at('dev/kvm'))) return 'none';
  if (existsSync(at('sys/module/kvm_pvm'))) return 'pvm';
  const cpuinfo = (() => {
    try {
      return readFileSync(at('proc/cpuinfo'), 'utf8');
    } catch {
      return '';
    }
  })();
  const hardware =
    existsSync(at('sys/module/kvm_intel')) ||
    existsSync(at('sys/module/kvm_amd')) ||
    /^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo);
  if (!hardware) return 'none';
  try {
    closeSync(openSync(at('dev/kvm'), constants.O_RDWR));
    return 'kvm';
  } catch {
    return 'none';
  }
}

const SLOWER = 'correct but much slower for heavy computation';

/**
 * What the host's probe alone says (`cove doctor`, get-info before the backend's first use):
 * PVM and no KVM are decided; hardware KVM is used only once a canary VM boots with it.
 */
export function describeAccelerator(host: HostVirt): Accelerator {
  if (host === 'pvm')
    return {
      name: 'tcg',
      host,
      why: `/dev/kvm is PVM (software nested virtualisation), which Debian's kernels cannot use: QEMU's software CPU (TCG), ${SLOWER}`,
    };
  if (host === 'none')
    return {
      name: 'tcg',
      host,
      why: `no /dev/kvm with hardware virtualisation: QEMU's software CPU (TCG), ${SLOWER}`,
    };
  return { name: 'kvm', host, why: 'hardware KVM (a canary VM confirms it when the backend starts)' };
}

/**
 * Chooses the accelerator: KVM when the host has hardware KVM and `canary` (a VM booted with
 * it to a responding agent) succeeds, QEMU's software CPU otherwise. With `requireKvm` the
 * absence of KVM is an error (the caller refuses the backend).
 */
export async function chooseAccelerator(host: HostVirt, canary: () => Promise<void>): Promise<Accelerator> {
  if (host !== 'kvm') return describeAccelerator(host);
  try {
    await canary();
    return { name: 'kvm', host, why: 'hardware KVM: a canary VM booted to its agent' };
  } catch (err) {
    return {
      name: 'tcg',
      host,
      why: `hardware KVM is present but a canary VM did not boot with it (${String(err).slice(0, 200)}): QEMU's software CPU (TCG), ${SLOWER}`,
    };
  }
}

/** What get-info and the console show: the backend's choice once made, the probe's answer before. */
export function acceleratorInfo(chosen: Accelerator | undefined): Accelerator & { decided: boolean } {
  return chosen ? { ...chosen, decided: true } : { ...describeAccelerator(probeHost()), decided: false };
}

/** Said where the microvm backend is chosen when it runs on QEMU's software CPU. */
export const TCG_WARNING =
  'microVMs run under software emulation (QEMU TCG, no usable KVM here): correct, but heavy computation in them is much slower than on crun or runsc';

/** The host's TSC frequency in kHz (under TCG the guest reads the host's TSC). */
export function hostTscKhz(): number | undefined {
  try {
    const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1];
    return mhz ? Math.round(Number(mhz) * 1000) : undefined;
  } catch {
    return undefined;
  }
}
