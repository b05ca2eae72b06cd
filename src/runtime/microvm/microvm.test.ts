import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { chooseAccelerator, probeHost } from './accel.ts';
import { newcArchive } from './guest.ts';
import { macFor, qemuArgv } from './qemu.ts';
import { scratchDir } from '../../../test/scratch.ts';

const vm = {
  cpus: 2,
  memoryMiB: 512,
  kernel: '/k',
  initrd: '/i',
  append: ['cove.host=abc'],
  agentSocket: '/s/agent.sock',
  qmpSocket: '/s/qmp.sock',
  consoleLog: '/s/console.log',
};

describe('microvm command line', () => {
  it('gives TCG the TSC frequency, KVM the host CPU, and a tap without vhost', () => {
    const tcg = qemuArgv({
      ...vm,
      accel: 'tcg',
      tscKhz: 2_600_000,
      nic: { tap: 'tap0', mac: '52:54:0a:00:00:02' },
    });
    expect(tcg.join(' ')).toContain('tsc_early_khz=2600000 tsc=reliable cove.host=abc');
    expect(tcg[tcg.indexOf('-cpu') + 1]).toBe('max');
    expect(tcg).toContain('tap,id=net,ifname=tap0,script=no,downscript=no,vhost=off');
    expect(tcg).toContain('socket,id=agent,path=/s/agent.sock,server=on,wait=off');
    expect(tcg).not.toContain('-S');
    const kvm = qemuArgv({ ...vm, accel: 'kvm', tscKhz: 2_600_000, paused: true });
    expect(kvm.join(' ')).not.toContain('tsc_early_khz');
    expect(kvm[kvm.indexOf('-cpu') + 1]).toBe('host');
    expect(kvm).toContain('-S');
    expect(kvm).not.toContain('-netdev');
    expect(kvm).toContain('memory-backend-ram,id=mem,size=512M');
  });

  it('puts a template VM on a shared RAM file and a dead-end NIC, its clones on private maps of it', () => {
    const template = qemuArgv({
      ...vm,
      accel: 'tcg',
      nic: { mac: '52:54:00:00:00:01' },
      memoryFile: { path: '/dev/shm/t.mem', share: true },
    });
    expect(template).toContain('memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t.mem,share=on');
    expect(template).toContain('hubport,id=net,hubid=0');
    const clone = qemuArgv({
      ...vm,
      accel: 'tcg',
      memoryFile: { path: '/dev/shm/t.mem', share: false },
      incoming: true,
    });
    expect(clone).toContain('memory-backend-file,id=mem,size=512M,mem-path=/dev/shm/t.mem,share=off');
    expect(clone.slice(-2)).toEqual(['-incoming', 'defer']);
  });

  it('makes a MAC from the sandbox address', () => {
    expect(macFor('10.51.1.2')).toBe('52:54:0a:33:01:02');
  });
});

describe('KVM detection', () => {
  const host = (files: string[], cpuFlags = 'fpu sse2') => {
    const root = `${scratchDir('cove-kvm-')}/`;
    for (const dir of ['dev', 'sys/module', 'proc']) mkdirSync(join(root, dir), { recursive: true });
    writeFileSync(join(root, 'proc/cpuinfo'), `processor\t: 0\nflags\t\t: ${cpuFlags}\n`);
    for (const f of files) mkdirSync(join(root, f), { recursive: true });
    return root;
  };

  it('tells hardware KVM, PVM and none apart', () => {
    expect(probeHost(host([]))).toBe('none');
    expect(probeHost(host(['sys/module/kvm_pvm']))).toBe('none'); // no /dev/kvm at all
    const pvm = host(['sys/module/kvm', 'sys/module/kvm_pvm']);
    writeFileSync(join(pvm, 'dev/kvm'), '');
    expect(probeHost(pvm)).toBe('pvm');
    const nested = host(['sys/module/kvm']); // /dev/kvm but no vmx/svm: not hardware
    writeFileSync(join(nested, 'dev/kvm'), '');
    expect(probeHost(nested)).toBe('none');
    const hw = host(['sys/module/kvm'], 'fpu vmx sse2');
    writeFileSync(join(hw, 'dev/kvm'), '');
    expect(probeHost(hw)).toBe('kvm');
  });

  it('uses KVM only when the canary boots', async () => {
    expect((await chooseAccelerator('kvm', () => Promise.resolve())).name).toBe('kvm');
    const failed = await chooseAccelerator('kvm', () => Promise.reject(new Error('MSR 0x10a')));
    expect(failed).toMatchObject({ name: 'tcg', host: 'kvm' });
    expect(failed.why).toContain('MSR 0x10a');
    let booted = false;
    const pvm = await chooseAccelerator('pvm', () => {
      booted = true;
      return Promise.resolve();
    });
    expect(pvm).toMatchObject({ name: 'tcg', host: 'pvm' });
    expect(booted).toBe(false); // a vCPU that runs on PVM proves nothing: no canary there
  });
});

describe('initramfs archive', () => {
  it('is a newc archive that cpio lists', () => {
    const archive = newcArchive([{ name: 'cove-agent', mode: 0o100755, data: Buffer.from('#!/bin/sh\n') }]);
    expect(archive.length % 4).toBe(0);
    const listed = execFileSync('busybox', ['cpio', '-t'], {
      input: archive,
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    expect(listed.toString().trim()).toBe('cove-agent');
  });
});
