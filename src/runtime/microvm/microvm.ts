import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import type { Capability, RuntimeDriver, SandboxSpec, SandboxStatus } from '../driver.ts';
import { readAddresses } from '../runsc/netns.ts';
import { chooseAccelerator, hostTscKhz, probeHost, type Accelerator } from './accel.ts';
import { guestDir, initrdWithAgent, templateImage } from './guest.ts';
import { macFor, Qmp, qemuArgv, type VmArgs } from './qemu.ts';

export interface MicrovmOptions {
  /** Cove's own state of its VMs (one directory per sandbox: QMP socket, pid). */
  stateRoot: string;
  /** Shared cache: guest kernels (scripts/microvm-guest.sh) and template images. */
  cacheDir: string;
  agentBinary: string;
  /** Refuse to start without hardware KVM (`cove serve --require-kvm`). */
  requireKvm?: boolean;
  binary?: string;
}

/** How long a cold boot may take to the agent opening its port (software emulation on 2 busy cores). */
const BOOT_TIMEOUT_MS = { kvm: 20_000, tcg: 120_000 };
const TAP = 'tap0';
const BRIDGE = 'br0';

export interface MicrovmDriver extends RuntimeDriver {
  /** Known after init(): what QEMU runs with and why. */
  accelerator(): Accelerator | undefined;
}

/**
 * The QEMU `microvm` backend (README.md): every sandbox is a VM with its own kernel, the same
 * agent as PID 1 over a virtio-serial port, its disk a qcow2 layer over the template's image,
 * its NIC a tap bridged to the namespace's eth0 (so the host sees it as any sandbox).
 */
export function createMicrovmDriver(opts: MicrovmOptions): MicrovmDriver {
  const qemu = opts.binary ?? 'qemu-system-x86_64';
  const guest = guestDir(opts.cacheDir);
  const initrd = join(opts.stateRoot, 'initrd.img');
  let accel: Accelerator | undefined;

  const stateDir = (id: string) => join(opts.stateRoot, id);
  const qmpPath = (id: string) => join(stateDir(id), 'qmp.sock');

  /** QEMU's pid when it still runs this sandbox's VM (its command line names the QMP socket). */
  function livePid(id: string): number | undefined {
    let pid: number;
    try {
      pid = Number(readFileSync(join(stateDir(id), 'pid'), 'utf8'));
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!cmdline.includes(qmpPath(id)) || / Z /.test(stat.slice(stat.lastIndexOf(')')))) return undefined;
    } catch {
      return undefined;
    }
    return pid;
  }

  async function withQmp<T>(id: string, fn: (q: Qmp) => Promise<T>): Promise<T> {
    const q = await Qmp.open(qmpPath(id));
    try {
      return await fn(q);
    } finally {
      q.close();
    }
  }

  function logTail(file: string): string {
    try {
      return readFileSync(file, 'utf8').trim().split('\n').slice(-3).join(' | ');
    } catch {
      return '';
    }
  }

  /**
   * The guest takes eth0's address: inside the namespace eth0 (the veth to Cove's bridge)
   * and a tap join a bridge, and QEMU's NIC sits on the tap; the host's view (address, veth,
   * nftables rules) is the same as for a container.
   */
  async function plumbTap(netns: string): Promise<{ address: string; gateway?: string }> {
    const eth0 = await readAddresses(netns);
    const address = eth0.addresses[0];
    if (!address) throw new CoveError('internal', `network namespace ${netns}: eth0 has no address`);
    await run('ip', ['-n', basename(netns), '-batch', '-'], {
      input: [
        'addr flush dev eth0',
        `link add ${BRIDGE} type bridge`,
        `link set eth0 master ${BRIDGE}`,
        `tuntap add dev ${TAP} mode tap`,
        `link set ${TAP} master ${BRIDGE}`,
        `link set ${TAP} up`,
        `link set ${BRIDGE} up`,
      ].join('\n'),
    });
    return { address, ...(eth0.gateway && { gateway: eth0.gateway }) };
  }

  async function launch(spec: SandboxSpec, args: VmArgs, extra: string[] = []): Promise<number> {
    const dir = stateDir(spec.id);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(join(dir, 'vm.json'), JSON.stringify({ bundleDir: spec.bundleDir, netns: spec.netns }));
    const argv = [...qemuArgv(args), ...extra];
    const [file, full] = spec.netns
      ? ['nsenter', [`--net=${spec.netns}`, '--', qemu, ...argv]]
      : [qemu, argv];
    const log = join(spec.bundleDir, 'runtime.log');
    const fd = openSync(log, 'a', 0o600);
    // Its own session, stdio on a file: the VM outlives Cove and is adopted again at start.
    const child = spawn(file, full, { stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    child.unref();
    const pid = child.pid;
    if (!pid) throw new CoveError('internal', `QEMU did not start: ${logTail(log)}`);
    await writeFile(join(dir, 'pid'), String(pid));
    // nsenter execs QEMU in place: the same pid. The QMP socket proves QEMU took its arguments.
    await Qmp.open(qmpPath(spec.id), 10_000).then(
      (q) => q.close(),
      (err: unknown) => {
        throw new CoveError('internal', `QEMU failed for ${spec.id}: ${logTail(log) || String(err)}`);
      },
    );
    return pid;
  }

  return {
    name: 'microvm',
    capabilities: new Set<Capability>(['guest-kernel', 'joins-netns', 'pause']),
    accelerator: () => accel,

    async init() {
      await run(qemu, ['--version']).catch((err: unknown) => {
        throw new CoveError(
          'unavailable',
          `QEMU is not installed (apt-get install qemu-system-x86 qemu-utils): ${String(err)}`,
        );
      });
      await mkdir(opts.stateRoot, { recursive: true, mode: 0o700 });
      await initrdWithAgent(guest, opts.agentBinary, initrd);
      if (!accel) {
        const host = probeHost();
        accel = await chooseAccelerator(host, () => canary());
      }
      if (opts.requireKvm && accel.name !== 'kvm')
        throw new CoveError('unavailable', `--require-kvm: no usable KVM on this host (${accel.why})`);
    },

    async create(spec: SandboxSpec) {
      if (!accel) throw new CoveError('internal', 'microvm driver used before init');
      if (!spec.templateRootfs)
        throw new CoveError('internal', `sandbox ${spec.id}: the microvm driver needs the template's rootfs`);
      const image = await templateImage(opts.cacheDir, spec.templateRootfs);
      // The sandbox's writable layer: kept across a pause (its directory stays), removed with it.
      const disk = join(spec.bundleDir, 'disk.qcow2');
      if (!existsSync(disk))
        await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', 'raw', '-b', image, disk]);
      const net = spec.netns ? await plumbTap(spec.netns) : undefined;
      const append = [`cove.host=${spec.id}`];
      if (net) append.push(`cove.ip=${net.address}`, ...(net.gateway ? [`cove.gw=${net.gateway}`] : []));
      const pid = await launch(spec, {
        accel: accel.name,
        cpus: Math.max(1, Math.round(spec.limits.cpus)),
        memoryMiB: Math.max(256, spec.limits.memoryMiB),
        kernel: join(guest, 'vmlinuz'),
        initrd,
        append,
        ...(accel.name === 'tcg' && { tscKhz: hostTscKhz() }),
        agentSocket: join(spec.agentRunDir, 'agent.sock'),
        qmpSocket: qmpPath(spec.id),
        consoleLog: join(spec.bundleDir, 'console.log'),
        disk,
        ...(net && { tap: { ifname: TAP, mac: macFor(net.address.split('/')[0]!) } }),
        paused: true,
      });
      return { pid };
    },

    /** Starts the vCPUs and waits until the agent has opened its port (QMP event VSERPORT_CHANGE). */
    async start(id: string) {
      await bootToAgent(id, BOOT_TIMEOUT_MS[accel?.name ?? 'tcg']);
    },

    async status(id: string): Promise<SandboxStatus> {
      if (!existsSync(stateDir(id))) return 'missing';
      if (livePid(id) === undefined) return 'stopped';
      const st = (await withQmp(id, (q) => q.execute('query-status')).catch(() => undefined)) as
        { status?: string } | undefined;
      if (st?.status === 'prelaunch') return 'created';
      return st?.status === 'paused' ? 'paused' : 'running';
    },

    async list() {
      const entries = await readdir(opts.stateRoot, { withFileTypes: true }).catch(() => []);
      return entries.filter((e) => e.isDirectory()).map((e) => e.name);
    },

    // In place: QEMU stops the vCPUs, memory stays where it is (as crun's cgroup freezer).
    async freeze(id: string) {
      await withQmp(id, (q) => q.execute('stop'));
    },

    async thaw(id: string) {
      await withQmp(id, (q) => q.execute('cont'));
    },

    async destroy(id: string) {
      const pid = livePid(id);
      if (pid !== undefined) {
        process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 500 && livePid(id) !== undefined; i++)
          await new Promise((r) => setTimeout(r, 10));
        if (livePid(id) !== undefined) throw new CoveError('internal', `QEMU ${pid} of ${id} did not exit`);
      }
      await rm(stateDir(id), { recursive: true, force: true });
    },
  };

  /** Boots a VM with -accel kvm to its agent: a vCPU that runs proves nothing (DESIGN.md). */
  async function canary(): Promise<void> {
    const id = `canary-${process.pid}`;
    const dir = join(opts.stateRoot, id);
    await mkdir(join(dir, 'run'), { recursive: true });
    const spec = { id, bundleDir: dir, agentRunDir: join(dir, 'run') } as SandboxSpec;
    try {
      await launch(spec, {
        accel: 'kvm',
        cpus: 1,
        memoryMiB: 256,
        kernel: join(guest, 'vmlinuz'),
        initrd,
        append: ['cove.canary=1'],
        agentSocket: join(dir, 'run', 'agent.sock'),
        qmpSocket: qmpPath(id),
        consoleLog: join(dir, 'console.log'),
        paused: true,
      });
      await bootToAgent(id, BOOT_TIMEOUT_MS.kvm);
    } finally {
      const pid = livePid(id);
      if (pid !== undefined) process.kill(pid, 'SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  }

  async function bootToAgent(id: string, timeoutMs: number): Promise<void> {
    await withQmp(id, async (q) => {
      const open = q.event(
        (m) => m.event === 'VSERPORT_CHANGE' && m.data?.open === true,
        timeoutMs,
        'agent port',
      );
      await q.execute('cont');
      await open.catch(async (err: unknown) => {
        const vm = JSON.parse(await readFile(join(stateDir(id), 'vm.json'), 'utf8')) as { bundleDir: string };
        throw new CoveError(
          'unavailable',
          `VM ${id} did not boot: ${String(err)}; console: ${logTail(join(vm.bundleDir, 'console.log'))}`,
        );
      });
    });
  }
}
