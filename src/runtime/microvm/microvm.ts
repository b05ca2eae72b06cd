import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import type { Capability, RuntimeDriver, SandboxSpec, SandboxStatus } from '../driver.ts';
import { acceleratorInfo, hostTscKhz, type Accelerator } from './accel.ts';
import { prepareBackend } from './prepare.ts';
import { guestDir, templateImage } from './guest.ts';
import { setIdentity } from './identity.ts';
import { copyPaused, saveRunning } from './live-save.ts';
import { loadState, saveState } from './migrate.ts';
import { macFor, type VmArgs } from './qemu.ts';
import { readyOrRetry } from './ready.ts';
import type { BaseArgs } from './template-vm.ts';
import { plumbTap, TAP } from './tap.ts';
import { createVms, type VmState } from './vm.ts';

export interface MicrovmOptions {
  /** Cove's own state of its VMs (one directory per sandbox: QMP socket, pid). */
  stateRoot: string;
  /** Shared cache: guest kernels (scripts/microvm-guest.sh), template images and saved VMs. */
  cacheDir: string;
  agentBinary: string;
  /** Refuse to start without hardware KVM (`cove serve --require-kvm`). */
  requireKvm?: boolean;
  binary?: string;
  /** Boot every VM instead of cloning its template's saved VM (the benchmark's cold boot). */
  noClones?: boolean;
  /** How long a VM may take to become ready (boot, or restore and identity) before it is killed and retried once. */
  readyTimeoutMs?: number;
  log?: (msg: string, fields: Record<string, unknown>) => void;
  warn?: (msg: string, fields: Record<string, unknown>) => void;
  /** Sandbox VMs' QEMU goes into `<cgroupParent>/<id>`, where their metrics are read (the instance name). */
  cgroupParent?: string;
  /** Prepare at the first VM, not at init (a server whose default backend is another). */
  lazy?: boolean;
}

/** How long a cold boot may take to the agent opening its port (software emulation on 2 busy cores). */
const BOOT_TIMEOUT_MS = { kvm: 20_000, tcg: 120_000 };
/** Loading a saved state and giving the VM its identity (the first exec in a clone translates busybox). */
const RESTORE_TIMEOUT_MS = 60_000;
/** How often saved VMs of deleted or rebuilt templates, or unused, are looked for. */
const SWEEP_MS = 60_000;
/** Writing a VM's whole RAM (up to its size) into a file. */
const SAVE_TIMEOUT_MS = 120_000;

export interface MicrovmDriver extends RuntimeDriver {
  /** Known after init(): what QEMU runs with and why. */
  accelerator(): Accelerator | undefined;
  /** The accelerator for get-info and the console: the chosen one, else what the host's probe says. */
  info(): Accelerator & { decided: boolean };
}

/**
 * The QEMU `microvm` backend (README.md): every sandbox is a VM with its own kernel, the same
 * agent as PID 1 over a virtio-serial port, its disk a qcow2 layer over the template's image,
 * its NIC a tap bridged to the namespace's eth0 (so the host sees it as any sandbox). A VM is
 * a clone of its template's saved VM (template-vm.ts) where there is one, booted otherwise.
 */
export function createMicrovmDriver(opts: MicrovmOptions): MicrovmDriver {
  const qemu = opts.binary ?? 'qemu-system-x86_64';
  const guest = guestDir(opts.cacheDir);
  const initrd = join(opts.stateRoot, 'initrd.img');
  const vms = createVms(opts.stateRoot, qemu);
  let accel: Accelerator | undefined;
  let templates: Awaited<ReturnType<typeof prepareBackend>>['templates'] | undefined;
  /** The sweep of saved VMs of no more use (template-vm.ts, collect): at start and every minute. */
  let sweeper: NodeJS.Timeout | undefined;
  let prepared: Promise<void> | undefined;
  /** The backend's first use: guest, agent, accelerator, saved VMs (prepare.ts); once, retried after a failure. */
  function prepare(): Promise<void> {
    prepared ??= prepareBackend({
      qemu,
      vms,
      stateRoot: opts.stateRoot,
      cacheDir: opts.cacheDir,
      guest,
      initrd,
      agentBinary: opts.agentBinary,
      bootTimeoutMs: BOOT_TIMEOUT_MS,
      ...(opts.requireKvm && { requireKvm: true }),
      ...(opts.log && { log: opts.log }),
      ...(opts.warn && { warn: opts.warn }),
    }).then(
      (r) => {
        accel = r.accel;
        templates = r.templates;
        const sweep = () =>
          r.templates.collect().then((removed) => {
            if (removed.length > 0) opts.log?.('microvm: removed unused saved VMs', { removed });
          });
        clearInterval(sweeper);
        sweeper = setInterval(() => void sweep().catch(() => undefined), SWEEP_MS).unref();
        return sweep();
      },
      (err: unknown) => {
        prepared = undefined;
        throw err;
      },
    );
    return prepared;
  }
  /** Saved VMs that could not be made: their templates boot, until Cove restarts. */
  const unsaved = new Map<string, string>();

  function baseArgs(spec: Pick<SandboxSpec, 'limits'>): BaseArgs {
    if (!accel) throw new CoveError('internal', 'microvm driver used before init');
    return {
      accel: accel.name,
      cpus: Math.max(1, Math.round(spec.limits.cpus)),
      memoryMiB: Math.max(256, spec.limits.memoryMiB),
      kernel: join(guest, 'vmlinuz'),
      initrd,
      ...(accel.name === 'tcg' && { tscKhz: hostTscKhz() }),
    };
  }

  /** A sandbox's own part of the command line: its sockets, console, disk and NIC. */
  function ownArgs(spec: SandboxSpec, net: { address: string } | undefined) {
    return {
      runAs: { uid: spec.uidBase, gid: spec.uidBase },
      agentSocket: join(spec.agentRunDir, 'agent.sock'),
      qmpSocket: vms.qmpPath(spec.id),
      consoleLog: join(spec.bundleDir, 'console.log'),
      disk: join(spec.bundleDir, 'disk.qcow2'),
      ...(net && { nic: { tap: TAP, mac: macFor(net.address.split('/')[0]!) } }),
    };
  }

  /** Who the guest becomes after a restore: the sandbox's name and network (identity.ts). */
  function identityOf(spec: SandboxSpec, net: { address: string; gateway?: string } | undefined) {
    return {
      hostname: spec.id,
      ...(net && {
        address: net.address,
        mac: macFor(net.address.split('/')[0]!),
        ...(net.gateway && { gateway: net.gateway }),
      }),
    };
  }

  /**
   * Starts QEMU waiting for a saved state and loads it; the VM stays stopped, its NIC's
   * backend down (set_link survives the load, the NIC's own state does not), so that no
   * frame of the saved VM's address or MAC leaves before start() has given it its own.
   */
  async function launchRestored(
    id: string,
    args: VmArgs,
    state: VmState,
    from: { file: string; ignoreShared: boolean },
  ): Promise<number> {
    const pid = await vms.launch(id, { ...state, from }, { ...args, incoming: true, paused: true });
    await vms.withQmp(id, async (q) => {
      if (args.nic) await q.execute('set_link', { name: 'net', up: false });
      await loadState(q, from.file, {
        ignoreShared: from.ignoreShared,
        timeoutMs: RESTORE_TIMEOUT_MS,
        socketDir: vms.ioDir(id),
      });
    });
    return pid;
  }

  /** A template's saved VM, or why its VMs boot instead (logged once). */
  async function savedVmFor(spec: SandboxSpec, image: string) {
    if (opts.noClones || !templates) return undefined;
    const base = baseArgs(spec);
    if (unsaved.has(image)) return undefined;
    return templates.get(base, image).catch((err: unknown) => {
      unsaved.set(image, String(err));
      opts.log?.('microvm: the template VM could not be saved; its sandboxes boot', {
        image,
        err: String(err),
      });
      return undefined;
    });
  }

  /**
   * A booted VM: starts the vCPUs and waits until the agent has opened its port. A restored
   * one: runs it, gives it its identity through its agent, then lets its NIC carry frames.
   */
  async function start(id: string): Promise<void> {
    await prepare();
    await readyOrRetry({
      id,
      ready: () => startOnce(id),
      relaunch: () => relaunch(id),
      ...(opts.log && { log: opts.log }),
    });
  }

  async function startOnce(id: string): Promise<void> {
    const state = await vms.readState(id);
    if (!state.restored)
      return vms.bootToAgent(id, opts.readyTimeoutMs ?? BOOT_TIMEOUT_MS[accel?.name ?? 'tcg']);
    await vms.withQmp(id, (q) => q.execute('cont'));
    await setIdentity(
      join(state.bundleDir, 'run', 'agent.sock'),
      state.restored,
      opts.readyTimeoutMs ?? RESTORE_TIMEOUT_MS,
    );
    if (state.restored.address)
      await vms.withQmp(id, (q) => q.execute('set_link', { name: 'net', up: true }));
    delete state.restored;
    await vms.writeState(id, state);
  }

  /** Kills a VM that was not ready and launches it again as it was (booting, or loading its state). */
  async function relaunch(id: string): Promise<void> {
    const { args, from, ...state } = await vms.readState(id);
    if (!args) throw new CoveError('internal', `VM ${id} has no launch arguments to start again`);
    await vms.kill(id);
    if (from) await launchRestored(id, args, state, from);
    else await vms.launch(id, state, args);
  }

  return {
    name: 'microvm',
    capabilities: new Set<Capability>(['guest-kernel', 'joins-netns', 'pause', 'checkpoint-memory']),
    accelerator: () => accel,
    info: () => acceleratorInfo(accel),

    /** Cheap: the state directory, so that list() finds the VMs to adopt; the rest at first use (prepare.ts). */
    async init() {
      // Walkable (not listable) down to each VM's io/ by QEMU's unprivileged user (vm.ts).
      await mkdir(opts.stateRoot, { recursive: true, mode: 0o711 });
      for (const dir of [opts.stateRoot, dirname(opts.stateRoot)]) await chmod(dir, 0o711);
      if (!opts.lazy) await prepare();
    },

    async create(spec: SandboxSpec) {
      await prepare();
      if (!spec.templateRootfs)
        throw new CoveError('internal', `sandbox ${spec.id}: the microvm driver needs the template's rootfs`);
      const image = await templateImage(opts.cacheDir, spec.templateRootfs);
      // The sandbox's writable layer: kept across a pause (its directory stays), removed with it.
      // A layer that exists (a files-only resume) boots: a saved VM's memory would not match it.
      const disk = join(spec.bundleDir, 'disk.qcow2');
      const saved = existsSync(disk) ? undefined : await savedVmFor(spec, image);
      if (!existsSync(disk)) {
        const [format, backing] = saved ? ['qcow2', saved.disk] : ['raw', image];
        await run('qemu-img', ['create', '-q', '-f', 'qcow2', '-F', format, '-b', backing, disk]);
      }
      const net = spec.netns ? await plumbTap(spec.netns) : undefined;
      const state: VmState = {
        bundleDir: spec.bundleDir,
        ...(spec.netns && { netns: spec.netns }),
        ...(opts.cgroupParent && { cgroup: opts.cgroupParent }),
      };
      const args: VmArgs = { ...baseArgs(spec), append: [], ...ownArgs(spec, net) };
      if (saved) {
        await templates?.refer(saved.dir, spec.id, spec.bundleDir);
        const restored = { ...state, backing: saved.dir, restored: identityOf(spec, net) };
        const pid = await launchRestored(
          spec.id,
          { ...args, memoryFile: { path: saved.memory, share: false } },
          restored,
          {
            file: saved.state,
            ignoreShared: true,
          },
        );
        return { pid };
      }
      const append = [`cove.host=${spec.id}`];
      if (net) append.push(`cove.ip=${net.address}`, ...(net.gateway ? [`cove.gw=${net.gateway}`] : []));
      const pid = await vms.launch(spec.id, state, { ...args, append, paused: true });
      return { pid };
    },

    start,

    /**
     * Saves the running VM (RAM, devices, vCPUs) into `imageDir/state` and stops it. Its disk
     * stays in the sandbox's directory for a resume; `withDisk` also copies it into the image
     * (a fork's or capture's starting point, restored as other sandboxes).
     */
    async checkpoint(id: string, imageDir: string, o: { withDisk?: boolean } = {}) {
      const state = await vms.readState(id);
      await vms.withQmp(id, (q) =>
        saveState(q, join(imageDir, 'state'), {
          ignoreShared: false,
          timeoutMs: SAVE_TIMEOUT_MS,
          socketDir: vms.ioDir(id),
        }),
      );
      await vms.kill(id);
      if (o.withDisk)
        await run('cp', [
          '--sparse=always',
          join(state.bundleDir, 'disk.qcow2'),
          join(imageDir, 'disk.qcow2'),
        ]);
      await writeFile(join(imageDir, 'vm.json'), JSON.stringify({ backing: state.backing }));
    },

    /** A running VM's memory and disk into `imageDir` while it goes on (live-save.ts): snapshots, forks. */
    snapshot: (id: string, imageDir: string, paused?: { image: string; bundleDir: string }) => {
      const refer = (b: string, o: string, h: string) => templates!.refer(b, o, h);
      return paused
        ? copyPaused(paused.image, join(paused.bundleDir, 'disk.qcow2'), imageDir, refer)
        : saveRunning(vms, id, imageDir, { timeoutMs: SAVE_TIMEOUT_MS, refer });
    },

    /**
     * Restores a checkpoint image as the sandbox `spec` describes (the same id: a resume, on
     * its own disk; another: a fork, on a copy of the image's disk) and runs it with its
     * own identity (start()).
     */
    async restore(spec: SandboxSpec, imageDir: string) {
      await prepare();
      const meta = JSON.parse(await readFile(join(imageDir, 'vm.json'), 'utf8')) as { backing?: string };
      const disk = join(spec.bundleDir, 'disk.qcow2');
      if (!existsSync(disk)) {
        if (!existsSync(join(imageDir, 'disk.qcow2')))
          throw new CoveError('internal', `the image ${imageDir} holds no disk for ${spec.id}`);
        await run('cp', ['--sparse=always', join(imageDir, 'disk.qcow2'), disk]);
      }
      if (meta.backing) await templates?.refer(meta.backing, spec.id, spec.bundleDir);
      const net = spec.netns ? await plumbTap(spec.netns) : undefined;
      const state: VmState = {
        bundleDir: spec.bundleDir,
        ...(spec.netns && { netns: spec.netns }),
        ...(opts.cgroupParent && { cgroup: opts.cgroupParent }),
        ...(meta.backing && { backing: meta.backing }),
        restored: identityOf(spec, net),
      };
      const args: VmArgs = { ...baseArgs(spec), append: [], ...ownArgs(spec, net) };
      const pid = await launchRestored(spec.id, args, state, {
        file: join(imageDir, 'state'),
        ignoreShared: false,
      });
      await start(spec.id);
      return { pid };
    },

    async status(id: string): Promise<SandboxStatus> {
      if (!existsSync(vms.stateDir(id))) return 'missing';
      if (vms.livePid(id) === undefined) return 'stopped';
      const st = (await vms.withQmp(id, (q) => q.execute('query-status')).catch(() => undefined)) as
        { status?: string } | undefined;
      if (st?.status === 'prelaunch' || st?.status === 'inmigrate') return 'created';
      if ((await vms.readState(id).catch(() => undefined))?.restored) return 'created';
      return st?.status === 'paused' ? 'paused' : 'running';
    },

    async list() {
      const entries = await readdir(opts.stateRoot, { withFileTypes: true }).catch(() => []);
      return entries.filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
    },

    // In place: QEMU stops the vCPUs, memory stays where it is (as crun's cgroup freezer).
    async freeze(id: string) {
      await vms.withQmp(id, (q) => q.execute('stop'));
    },

    async thaw(id: string) {
      await vms.withQmp(id, (q) => q.execute('cont'));
    },

    destroy: (id: string) => vms.destroy(id),
  };
}
