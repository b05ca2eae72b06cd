import type { Config } from '../config/config.ts';
import type { Logger } from '../core/log.ts';
import { createMicrovmDriver } from './microvm/microvm.ts';
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
    'crunRoot' | 'runscRoot' | 'mountHelper' | 'instance' | 'statxShim' | 'microvm' | 'agentBinary'
  >,
  log?: Logger,
) {
  const microvm = createMicrovmDriver({
    ...config.microvm,
    agentBinary: config.agentBinary,
    ...(log && { log: (msg: string, fields: Record<string, unknown>) => log.info(fields, msg) }),
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
