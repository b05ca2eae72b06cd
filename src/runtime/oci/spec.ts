import { readFileSync } from 'node:fs';
import { agentPaths, type SandboxSpec } from '../driver.ts';
import { capabilities, maskedPaths, readonlyPaths, seccompDenied } from './policy.ts';

/** The part of the OCI runtime spec (config.json) Cove writes. */
export interface OciSpec {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities?: Record<'bounding' | 'effective' | 'permitted' | 'inheritable' | 'ambient', string[]>;
    rlimits?: Array<{ type: string; hard: number; soft: number }>;
    noNewPrivileges: boolean;
  };
  root: { path: string; readonly: boolean };
  hostname: string;
  mounts: Array<{ destination: string; type: string; source: string; options?: string[] }>;
  linux: {
    namespaces: Array<{ type: string; path?: string }>;
    uidMappings?: Array<{ containerID: number; hostID: number; size: number }>;
    gidMappings?: Array<{ containerID: number; hostID: number; size: number }>;
    cgroupsPath?: string;
    resources?: {
      memory?: { limit: number; swap: number };
      cpu?: { quota: number; period: number };
      pids?: { limit: number };
    };
    sysctl?: Record<string, string>;
    seccomp?: unknown;
    maskedPaths?: string[];
    readonlyPaths?: string[];
  };
}

export type SpecModifier = (spec: OciSpec) => void;

/** A bare spec: the agent as PID 1, as root of the sandbox, with the usual kernel filesystems. */
export function baseSpec(): OciSpec {
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args: [agentPaths.binary, '--socket', agentPaths.socket],
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      noNewPrivileges: false, // sudo (setuid) must work for the sandbox's user
    },
    root: { path: 'rootfs', readonly: false },
    hostname: 'sandbox',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      {
        destination: '/dev',
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
      },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'],
      },
      {
        destination: '/dev/shm',
        type: 'tmpfs',
        source: 'shm',
        options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
      },
      {
        destination: '/dev/mqueue',
        type: 'mqueue',
        source: 'mqueue',
        options: ['nosuid', 'noexec', 'nodev'],
      },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
      {
        destination: '/sys/fs/cgroup',
        type: 'cgroup',
        source: 'cgroup',
        options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'],
      },
    ],
    linux: { namespaces: [] },
  };
}

export function buildSpec(spec: OciSpec, ...modifiers: SpecModifier[]): OciSpec {
  for (const modify of modifiers) modify(spec);
  return spec;
}

/**
 * Every namespace of its own. The network namespace is created by the runtime, inside the
 * user namespace, so that sysfs is the sandbox's own; the host plumbs it between create and
 * start (a namespace made on the host would make crun bind the host's /sys read-write).
 */
export const withNamespaces: SpecModifier = (spec) => {
  spec.linux.namespaces = ['pid', 'network', 'ipc', 'uts', 'mount', 'cgroup', 'user'].map((type) => ({
    type,
  }));
};

export function withUserNamespace(uidBase: number, size: number): SpecModifier {
  return (spec) => {
    spec.linux.uidMappings = [{ containerID: 0, hostID: uidBase, size }];
    spec.linux.gidMappings = [{ containerID: 0, hostID: uidBase, size }];
  };
}

export function withCgroupLimits(path: string, limits: SandboxSpec['limits']): SpecModifier {
  return (spec) => {
    // Absolute: runc would otherwise resolve it under the caller's own memory cgroup.
    spec.linux.cgroupsPath = path;
    const memory = limits.memoryMiB * 1024 * 1024;
    spec.linux.resources = {
      memory: { limit: memory, swap: memory }, // swap == limit: no swap beyond the memory limit
      cpu: { quota: Math.round(limits.cpus * 100_000), period: 100_000 },
      pids: { limit: limits.pids },
    };
  };
}

export const withSeccomp: SpecModifier = (spec) => {
  spec.linux.seccomp = {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    syscalls: seccompDenied.map((rule) => ({
      names: rule.names,
      action: 'SCMP_ACT_ERRNO',
      errnoRet: rule.errno === 'EPERM' ? 1 : 38,
      ...(rule.argMasked && {
        args: [
          {
            index: rule.argMasked.index,
            value: rule.argMasked.mask,
            valueTwo: rule.argMasked.mask,
            op: 'SCMP_CMP_MASKED_EQ',
          },
        ],
      }),
    })),
  };
};

export const withCapabilities: SpecModifier = (spec) => {
  const set = [...capabilities];
  spec.process.capabilities = { bounding: set, effective: set, permitted: set, inheritable: [], ambient: [] };
};

/** Open files: the runtime sets limits from inside the user namespace, where it cannot
 * raise them above the host process's own hard limit: pass that limit. */
export function withOpenFileLimit(limit: number): SpecModifier {
  return (spec) => {
    spec.process.rlimits = [{ type: 'RLIMIT_NOFILE', hard: limit, soft: limit }];
  };
}

/** This process's hard limit of open files, read from /proc/self/limits. */
export function hostOpenFileLimit(limits = readFileSync('/proc/self/limits', 'utf8')): number {
  const line = limits.split('\n').find((l) => l.startsWith('Max open files'));
  const hard = Number(line?.trim().split(/\s+/)[4]);
  return Number.isInteger(hard) && hard > 0 ? Math.min(hard, 1 << 20) : 1024;
}

export const withMaskedPaths: SpecModifier = (spec) => {
  spec.linux.maskedPaths = [...maskedPaths];
  spec.linux.readonlyPaths = [...readonlyPaths];
};

/** Sysctls of the sandbox's own network namespace. `gidCount`: gids mapped in the sandbox. */
export function withNetworkSysctls(gidCount: number): SpecModifier {
  return (spec) => {
    spec.linux.sysctl = {
      // ping through ICMP sockets, no NET_RAW needed; the kernel takes only mapped gids here
      'net.ipv4.ping_group_range': `0 ${gidCount - 1}`,
      'net.ipv4.ip_unprivileged_port_start': '0', // the sandbox's user may serve on port 80
      'net.ipv6.conf.all.disable_ipv6': '1', // IPv4 only: one policy to keep, no link-local v6 path
    };
  };
}

export function withHostname(hostname: string): SpecModifier {
  return (spec) => {
    spec.hostname = hostname;
  };
}

export function withRootfs(path: string): SpecModifier {
  return (spec) => {
    spec.root = { path, readonly: false };
  };
}

/** The agent binary (read-only) and its socket directory, and the token it authenticates the host with. */
export function withAgent(binary: string, runDir: string, token: string): SpecModifier {
  return (spec) => {
    spec.mounts.push(
      {
        destination: agentPaths.binary,
        type: 'bind',
        source: binary,
        options: ['bind', 'ro', 'nosuid', 'nodev'],
      },
      {
        destination: agentPaths.runDir,
        type: 'bind',
        source: runDir,
        options: ['bind', 'rw', 'nosuid', 'nodev', 'noexec'],
      },
    );
    spec.process.env.push(`COVE_AGENT_TOKEN=${token}`);
  };
}

/**
 * A file of the host bind-mounted read-only over /proc/sys/kernel/random/boot_id: the kernel's
 * own is the host's, the same for every sandbox and across a sandbox's reboots.
 */
export function withBootId(file: string): SpecModifier {
  return (spec) => {
    spec.mounts.push({
      destination: '/proc/sys/kernel/random/boot_id',
      type: 'bind',
      source: file,
      options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
    });
  };
}

/**
 * Volumes: bind mounts of host directories the caller mounted idmapped (a bind keeps the
 * idmap), after every other mount. The runtime resolves `destination` inside the rootfs
 * (crun: openat2 RESOLVE_IN_ROOT; gVisor: its own VFS), so a symlink the sandbox left at a
 * mount path leads somewhere in the sandbox, never on the host. Not recursive: only the
 * volume's own filesystem comes along.
 */
export function withVolumes(volumes: ReadonlyArray<{ source: string; destination: string }>): SpecModifier {
  return (spec) => {
    for (const v of volumes)
      spec.mounts.push({
        destination: v.destination,
        type: 'bind',
        source: v.source,
        options: ['bind', 'rw', 'nosuid', 'nodev'],
      });
  };
}

export function sandboxOciSpec(s: SandboxSpec, cgroupParent: string, bootIdFile?: string): OciSpec {
  return buildSpec(
    baseSpec(),
    withNamespaces,
    withUserNamespace(s.uidBase, s.uidCount),
    withCgroupLimits(`/${cgroupParent}/${s.id}`, s.limits),
    withSeccomp,
    withCapabilities,
    withOpenFileLimit(hostOpenFileLimit()),
    withMaskedPaths,
    withNetworkSysctls(s.uidCount),
    withHostname(s.id),
    withRootfs(s.rootfs),
    withAgent(s.agentBinary, s.agentRunDir, s.agentToken),
    ...(bootIdFile === undefined ? [] : [withBootId(bootIdFile)]),
    withVolumes(s.volumes ?? []),
  );
}
