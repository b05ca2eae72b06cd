import { describe, expect, it } from 'vitest';
import { detectCgroupMode, cgroupDirs } from './cgroups.ts';
import { hostOpenFileLimit, sandboxOciSpec } from './spec.ts';

const spec0 = {
  id: 'abcdefghijabcdefghij',
  rootfs: '/var/lib/cove/sandboxes/x/rootfs',
  bundleDir: '/var/lib/cove/sandboxes/x',
  uidBase: 1_065_536,
  uidCount: 65_536,
  limits: { cpus: 2, memoryMiB: 512, pids: 1024 },
  agentBinary: '/opt/cove-agent',
  agentRunDir: '/var/lib/cove/sandboxes/x/run',
  agentToken: 'secret',
};
const spec = sandboxOciSpec(spec0, 'cove');

describe('the OCI spec of a sandbox', () => {
  it('has every namespace, the user namespace mapped to its own range', () => {
    expect(spec.linux.namespaces.map((n) => n.type).sort()).toEqual([
      'cgroup',
      'ipc',
      'mount',
      'network',
      'pid',
      'user',
      'uts',
    ]);
    expect(spec.linux.namespaces.every((n) => n.path === undefined)).toBe(true);
    expect(spec.linux.uidMappings).toEqual([{ containerID: 0, hostID: 1_065_536, size: 65_536 }]);
    expect(spec.linux.gidMappings).toEqual(spec.linux.uidMappings);
  });

  it('limits cpu, memory and pids under the instance cgroup', () => {
    expect(spec.linux.cgroupsPath).toBe('/cove/abcdefghijabcdefghij');
    expect(spec.linux.resources).toEqual({
      memory: { limit: 512 << 20, swap: 512 << 20 },
      cpu: { quota: 200_000, period: 100_000 },
      pids: { limit: 1024 },
    });
  });

  it('denies the dangerous syscalls and drops NET_RAW and SYS_ADMIN', () => {
    const seccomp = spec.linux.seccomp as {
      defaultAction: string;
      syscalls: Array<{ names: string[]; errnoRet: number }>;
    };
    expect(seccomp.defaultAction).toBe('SCMP_ACT_ALLOW');
    const denied = seccomp.syscalls.flatMap((s) => s.names);
    for (const name of [
      'mount',
      'bpf',
      'kexec_load',
      'init_module',
      'perf_event_open',
      'keyctl',
      'ptrace',
      'unshare',
      'io_uring_setup',
    ]) {
      expect(denied).toContain(name);
    }
    expect(seccomp.syscalls.find((s) => s.names.includes('clone3'))?.errnoRet).toBe(38);
    expect(spec.process.capabilities?.bounding).not.toContain('CAP_NET_RAW');
    expect(spec.process.capabilities?.bounding).not.toContain('CAP_SYS_ADMIN');
  });

  it('masks host kernel paths and names the sandbox', () => {
    expect(spec.linux.maskedPaths).toContain('/proc/kcore');
    expect(spec.linux.maskedPaths).toContain('/sys/firmware');
    expect(spec.linux.readonlyPaths).toContain('/proc/sys');
    expect(spec.hostname).toBe('abcdefghijabcdefghij');
    expect(spec.linux.sysctl?.['net.ipv4.ping_group_range']).toBe('0 65535');
  });

  it('runs the agent as PID 1 with its token, from read-only and noexec mounts', () => {
    expect(spec.process.args[0]).toBe('/.cove/agent');
    expect(spec.process.env).toContain('COVE_AGENT_TOKEN=secret');
    expect(spec.mounts.find((m) => m.destination === '/.cove/agent')?.options).toContain('ro');
    expect(spec.mounts.find((m) => m.destination === '/.cove/run')?.options).toContain('noexec');
  });

  it('binds volumes last, read-write, nosuid and nodev, not recursively', () => {
    const withVolume = sandboxOciSpec(
      { ...spec0, volumes: [{ source: '/var/lib/cove/sandboxes/x/volumes/0', destination: '/data' }] },
      'cove',
    );
    expect(withVolume.mounts.at(-1)).toEqual({
      destination: '/data',
      type: 'bind',
      source: '/var/lib/cove/sandboxes/x/volumes/0',
      options: ['bind', 'rw', 'nosuid', 'nodev'],
    });
    expect(spec.mounts.some((m) => m.destination === '/data')).toBe(false);
  });
});

describe('host facts', () => {
  it('tells the cgroup layouts apart', () => {
    expect(detectCgroupMode('cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n')).toBe('v2');
    expect(
      detectCgroupMode('tmpfs /sys/fs/cgroup tmpfs rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n'),
    ).toBe('hybrid');
    expect(detectCgroupMode('cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n')).toBe('v1');
    expect(
      cgroupDirs(
        'hybrid',
        'cove',
        'id',
        'cgroup /sys/fs/cgroup/memory cgroup rw 0 0\ncgroup /sys/fs/cgroup/pids cgroup rw 0 0\n',
      ),
    ).toEqual(['/sys/fs/cgroup/memory/cove/id', '/sys/fs/cgroup/pids/cove/id']);
  });

  it('reads the hard open-file limit', () => {
    expect(
      hostOpenFileLimit('Max open files            1024                 20000                files\n'),
    ).toBe(20000);
    expect(hostOpenFileLimit('garbage')).toBe(1024);
  });
});
