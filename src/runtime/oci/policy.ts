/**
 * Security policy of every OCI sandbox, as reviewed data: one reason per entry. Change an
 * entry only with its reason, and keep test/security in step.
 */

/** Capabilities of root inside the sandbox: Docker's default set without NET_RAW (raw
 * sockets forge packets on the bridge; ping works through ICMP sockets instead). */
export const capabilities = [
  'CAP_CHOWN', // chown in the sandbox's own files (package managers, sudo)
  'CAP_DAC_OVERRIDE', // root reads and writes any file of the sandbox
  'CAP_FSETID', // keep setgid bits when root edits files
  'CAP_FOWNER', // chmod/utime on files root does not own
  'CAP_MKNOD', // harmless: device cgroup and the user namespace still refuse real devices
  'CAP_SETGID', // su, sudo, setpriv drop to another group
  'CAP_SETUID', // su, sudo, setpriv drop to another user
  'CAP_SETFCAP', // dpkg sets file capabilities when it installs packages
  'CAP_SETPCAP', // drop capabilities from children
  'CAP_NET_BIND_SERVICE', // servers on ports below 1024
  'CAP_SYS_CHROOT', // chroot, used by some package scripts
  'CAP_KILL', // signal any process of the sandbox
  'CAP_AUDIT_WRITE', // login tools (su, sudo) write audit records or fail
] as const;

/** Kernel paths a sandbox must not read: host secrets and hardware details. */
export const maskedPaths = [
  '/proc/acpi', // host firmware tables
  '/proc/asound', // host sound hardware
  '/proc/kcore', // host physical memory
  '/proc/keys', // kernel keyrings of all users
  '/proc/latency_stats', // host-wide timing side channel
  '/proc/timer_list', // host timers, a side channel
  '/proc/timer_stats', // same
  '/proc/sched_debug', // every host task's scheduling data
  '/proc/scsi', // host disks; writes rescan the bus
  '/sys/firmware', // host firmware (ACPI, DMI tables)
  '/sys/devices/virtual/powercap', // RAPL energy counters: a power side channel
] as const;

/** Kernel paths a sandbox may read but never write. */
export const readonlyPaths = [
  '/proc/bus', // PCI config space
  '/proc/fs', // filesystem tunables
  '/proc/irq', // interrupt affinity of the host
  '/proc/sys', // host-wide sysctls (the sandbox's own net.* are set through config.json)
  '/proc/sysrq-trigger', // reboot and crash the host
] as const;

export interface SeccompRule {
  names: string[];
  /** errno returned instead of running the call. */
  errno: 'EPERM' | 'ENOSYS';
  reason: string;
  /** Only when argument `index`, masked with `mask`, equals `mask`. */
  argMasked?: { index: number; mask: number };
}

const CLONE_NEWUSER = 0x10000000;

/**
 * Default allow, deny what lets a sandbox reach the kernel's rarely-hardened surfaces or
 * the host. A deny list (not Debian's allow list) keeps create fast (the allow list costs
 * ~12 ms per create) and blocks the nested user namespace that the allow list lets through.
 */
export const seccompDenied: SeccompRule[] = [
  {
    names: ['mount', 'umount2', 'pivot_root'],
    errno: 'EPERM',
    reason: 'no new mounts: the rootfs is fixed by the host',
  },
  {
    names: ['fsopen', 'fsconfig', 'fsmount', 'fspick', 'open_tree', 'move_mount', 'mount_setattr'],
    errno: 'EPERM',
    reason: 'the new mount API, same reason as mount',
  },
  {
    names: ['kexec_load', 'kexec_file_load', 'reboot'],
    errno: 'EPERM',
    reason: 'replace or stop the kernel',
  },
  { names: ['init_module', 'finit_module', 'delete_module'], errno: 'EPERM', reason: 'kernel modules' },
  { names: ['bpf'], errno: 'EPERM', reason: 'eBPF: a large kernel attack surface' },
  { names: ['perf_event_open'], errno: 'EPERM', reason: 'host-wide profiling and a history of kernel bugs' },
  {
    names: ['keyctl', 'add_key', 'request_key'],
    errno: 'EPERM',
    reason: 'kernel keyrings are not namespaced',
  },
  {
    names: ['ptrace', 'process_vm_readv', 'process_vm_writev'],
    errno: 'EPERM',
    reason: 'reading other processes',
  },
  {
    names: ['open_by_handle_at', 'name_to_handle_at'],
    errno: 'EPERM',
    reason: 'file handles bypass the mount namespace (the "shocker" escape)',
  },
  {
    names: ['setns', 'unshare'],
    errno: 'EPERM',
    reason: 'no nested namespaces: they reopen the mount and bpf surfaces',
  },
  {
    names: ['clone'],
    errno: 'EPERM',
    argMasked: { index: 0, mask: CLONE_NEWUSER },
    reason: 'no nested user namespace through clone',
  },
  {
    names: ['clone3'],
    errno: 'ENOSYS',
    reason: 'its flags live in memory seccomp cannot inspect; ENOSYS makes libc fall back to clone',
  },
  { names: ['swapon', 'swapoff'], errno: 'EPERM', reason: 'host swap' },
  { names: ['syslog'], errno: 'EPERM', reason: 'the host kernel log leaks addresses' },
  { names: ['acct'], errno: 'EPERM', reason: 'host process accounting' },
  {
    names: ['settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex'],
    errno: 'EPERM',
    reason: 'the clock is the host clock',
  },
  { names: ['userfaultfd'], errno: 'EPERM', reason: 'stalls kernel paths at will: an exploit primitive' },
  {
    names: ['io_uring_setup', 'io_uring_enter', 'io_uring_register'],
    errno: 'EPERM',
    reason: 'io_uring bypasses seccomp for the calls it carries',
  },
  { names: ['quotactl', 'quotactl_fd'], errno: 'EPERM', reason: 'host filesystem quotas' },
  { names: ['iopl', 'ioperm'], errno: 'EPERM', reason: 'raw port I/O' },
  {
    names: ['lookup_dcookie', 'nfsservctl', 'vm86', 'vm86old', 'uselib'],
    errno: 'EPERM',
    reason: 'obsolete calls with a bug history',
  },
];
