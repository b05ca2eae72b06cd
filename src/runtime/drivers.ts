import type { Config } from '../config/config.ts';
import type { Logger } from '../core/log.ts';
import { TCG_WARNING } from './microvm/accel.ts';
import { createMicrovmDriver, type MicrovmDriver } from './microvm/microvm.ts';
import { createCrunDriver } from './oci/crun.ts';
import { createRunscDriver } from './runsc/runsc.ts';

/**
 * The backends a server offers (docs/runtimes.md): crun, runsc (gVisor) and microvm (QEMU),
 * each sandbox's chosen by its template or the server default (set.ts). Their cgroups go under
 * the instance's parent. The microvm driver is returned too: the start log names its accelerator.
 */
export function createDrivers(
  config: Pick<
    Config,
    | 'crunRoot'
    | 'runscRoot'
    | 'mountHelper'
    | 'instance'
    | 'statxShim'
    | 'microvm'
    | 'agentBinary'
    | 'runtime'
  >,
  log?: Logger,
) {
  const microvm = createMicrovmDriver({
    ...config.microvm,
    agentBinary: config.agentBinary,
    ...(log && { log: (msg: string, fields: Record<string, unknown>) => log.info(fields, msg) }),
    ...(log && { warn: (msg: string, fields: Record<string, unknown>) => log.warn(fields, msg) }),
    // A Cove that never runs a microVM pays nothing for the backend at start (prepare.ts).
    lazy: config.runtime !== 'microvm',
    cgroupParent: config.instance,
  });
  const crun = createCrunDriver({
    stateRoot: config.crunRoot,
    mountHelper: config.mountHelper,
    cgroupParent: config.instance,
  });
  const runsc = createRunscDriver({
    stateRoot: config.runscRoot,
    cgroupParent: config.instance,
    statxShim: config.statxShim,
  });
  return { drivers: [crun, runsc, microvm], microvm };
}

/**
 * What `cove serve` says where microVMs are its default and run under software emulation:
 * correct, but slow for heavy computation (the driver logs it, and its accelerator, as it starts).
 */
export function acceleratorWarnings(microvm: MicrovmDriver, runtime: string): string[] {
  return runtime === 'microvm' && microvm.accelerator()?.name === 'tcg' ? [TCG_WARNING] : [];
}
