import { describe, expect, it } from 'vitest';
import { CoveError } from '../../core/errors.ts';
import { qemuArgv } from './qemu.ts';
import { readyOrRetry } from './ready.ts';

describe('a VM that does not become ready', () => {
  it('is killed and launched again once; a second attempt that works is a success', async () => {
    const calls: string[] = [];
    let attempts = 0;
    await readyOrRetry({
      id: 'vm1',
      ready: () => {
        calls.push('ready');
        if (++attempts === 1)
          return Promise.reject(new CoveError('deadline_exceeded', 'no agent port within 5 ms'));
        return Promise.resolve();
      },
      relaunch: () => {
        calls.push('relaunch');
        return Promise.resolve();
      },
      log: (msg) => void calls.push(msg),
    });
    expect(calls).toEqual(['ready', 'microvm: VM not ready; killed, retrying once', 'relaunch', 'ready']);
  });

  it('is reported with a typed error after the retry, and never tried a third time', async () => {
    let readies = 0;
    let relaunches = 0;
    const err = await readyOrRetry({
      id: 'vm2',
      ready: () => {
        readies++;
        return Promise.reject(new CoveError('deadline_exceeded', `no agent port within 5 ms (${readies})`));
      },
      relaunch: () => {
        relaunches++;
        return Promise.resolve();
      },
    }).catch((e: unknown) => e);
    expect([readies, relaunches]).toEqual([2, 1]);
    expect(err).toBeInstanceOf(CoveError);
    expect(err).toMatchObject({ code: 'deadline_exceeded' });
    expect((err as Error).message).toMatch(/VM vm2 did not become ready, twice .*\(1\).*\(2\)/);
  });

  it('says unavailable when QEMU went away or could not be launched again', async () => {
    const err = await readyOrRetry({
      id: 'vm3',
      ready: () => Promise.reject(new CoveError('unavailable', 'QEMU exited while waiting for agent port')),
      relaunch: () => Promise.reject(new Error('QEMU failed for vm3: could not open tap0')),
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'unavailable' });
    expect((err as Error).message).toContain('could not open tap0');
  });
});

describe('QEMU as its own user', () => {
  const vm = {
    accel: 'tcg' as const,
    cpus: 1,
    memoryMiB: 256,
    kernel: '/k',
    initrd: '/i',
    append: [],
    agentSocket: '/s/agent.sock',
    qmpSocket: '/s/qmp.sock',
    consoleLog: '/s/console.log',
  };

  it('drops to the uid after opening its files, spawns nothing, and keeps set*uid only for that drop', () => {
    const argv = qemuArgv({ ...vm, runAs: { uid: 1_065_536, gid: 1_065_536 } });
    expect(argv.slice(argv.indexOf('-runas'), argv.indexOf('-runas') + 2)).toEqual([
      '-runas',
      '1065536:1065536',
    ]);
    expect(argv[argv.indexOf('-sandbox') + 1]).toBe(
      'on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny',
    );
    const root = qemuArgv(vm);
    expect(root).not.toContain('-runas');
    expect(root[root.indexOf('-sandbox') + 1]).toContain('elevateprivileges=deny,spawn=deny');
  });
});
