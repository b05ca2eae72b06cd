import { connect, type Socket } from 'node:net';
import { CoveError } from '../../core/errors.ts';

/** One VM's QEMU command line, as data (README.md has the reasons for each choice). */
export interface VmArgs {
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMiB: number;
  kernel: string;
  initrd: string;
  /** Kernel command line parameters after the fixed ones. */
  append: string[];
  /** The host's TSC frequency (kHz): a hardware-reduced microvm has no PIT to calibrate against under TCG. */
  tscKhz?: number;
  /** QEMU's socket for the agent's virtio-serial port (the host end of the agent channel). */
  agentSocket: string;
  qmpSocket: string;
  consoleLog: string;
  disk?: string;
  /**
   * The guest's NIC: its MAC and the tap device (in the network namespace QEMU runs in) it
   * sits on; without a tap, a dead-end hub port (a template VM: the device must exist, as
   * its clones have it, but nothing is reachable through it).
   */
  nic?: { mac: string; tap?: string };
  /**
   * Guest RAM in a file (a template VM: shared, so that a saved VM's memory is that file;
   * its clones: private copy-on-write mappings of it); anonymous memory otherwise. Always
   * the backend `mem`, so that any saved VM restores into any other VM of the same size.
   */
  memoryFile?: { path: string; share: boolean };
  /** Wait for the VM's state over QMP (`migrate-incoming`) instead of booting. */
  incoming?: boolean;
  /** Start with the vCPUs stopped (`cont` over QMP starts them). */
  paused?: boolean;
  /**
   * The unprivileged user QEMU becomes once it has opened its files, sockets, tap and RAM as
   * root (`-runas uid:gid`): the sandbox's own host uid (its range's base, used by nothing
   * else for a VM), so a QEMU taken over by its guest holds no capability and reaches no other VM.
   */
  runAs?: { uid: number; gid: number };
}

export function qemuArgv(a: VmArgs): string[] {
  const append = ['console=ttyS0', 'quiet', 'panic=-1', 'reboot=t'];
  if (a.accel === 'tcg' && a.tscKhz) append.push(`tsc_early_khz=${a.tscKhz}`, 'tsc=reliable');
  const argv = [
    // ACPI stays on: Debian's cloud kernel finds the virtio-mmio devices through it only.
    '-M',
    'microvm,x-option-roms=off,rtc=on,acpi=on,memory-backend=mem',
    '-object',
    a.memoryFile
      ? `memory-backend-file,id=mem,size=${a.memoryMiB}M,mem-path=${a.memoryFile.path},share=${a.memoryFile.share ? 'on' : 'off'}`
      : `memory-backend-ram,id=mem,size=${a.memoryMiB}M`,
    '-accel',
    a.accel,
    '-cpu',
    a.accel === 'kvm' ? 'host' : 'max',
    '-m',
    String(a.memoryMiB),
    '-smp',
    String(a.cpus),
    '-nodefaults',
    '-no-user-config',
    '-display',
    'none',
    '-no-reboot',
    // QEMU's seccomp filter, installed before -runas drops root: set*uid must stay allowed for
    // that drop (it cannot raise anything afterwards, without capabilities); nothing is spawned
    // (migration goes through Cove's socket: migrate.ts).
    '-sandbox',
    `on,obsolete=deny,elevateprivileges=${a.runAs ? 'allow' : 'deny'},spawn=deny,resourcecontrol=deny`,
    '-chardev',
    `file,id=con,path=${a.consoleLog}`,
    '-serial',
    'chardev:con',
    '-device',
    'virtio-serial-device',
    '-chardev',
    `socket,id=agent,path=${a.agentSocket},server=on,wait=off`,
    '-device',
    'virtserialport,chardev=agent,name=cove.agent,nr=1,id=agent',
    '-qmp',
    `unix:${a.qmpSocket},server=on,wait=off`,
    '-kernel',
    a.kernel,
    '-initrd',
    a.initrd,
    '-append',
    [...append, ...a.append].join(' '),
  ];
  // auto-read-only off: a migration's end drops write access to the disk, and QEMU would
  // reopen it read-only by name, which its unprivileged user (-runas) may not.
  if (a.disk)
    argv.push(
      '-drive',
      `id=root,file=${a.disk},format=qcow2,if=none,cache=unsafe,discard=unmap,auto-read-only=off`,
      '-device',
      'virtio-blk-device,drive=root',
    );
  // vhost=on aborts QEMU 7.2 where /dev/vhost-net is missing (DESIGN.md).
  if (a.nic)
    argv.push(
      '-netdev',
      a.nic.tap
        ? `tap,id=net,ifname=${a.nic.tap},script=no,downscript=no,vhost=off`
        : 'hubport,id=net,hubid=0',
      '-device',
      `virtio-net-device,netdev=net,mac=${a.nic.mac},id=nic`,
    );
  if (a.runAs) argv.push('-runas', `${a.runAs.uid}:${a.runAs.gid}`);
  if (a.paused) argv.push('-S');
  if (a.incoming) argv.push('-incoming', 'defer');
  return argv;
}

/** A locally administered MAC from a sandbox's address (unique per slot, stable across a restore). */
export function macFor(address: string): string {
  const [a, b, c, d] = address.split('.').map(Number);
  return ['52', '54', a, b, c, d]
    .map((x) => (typeof x === 'number' ? x.toString(16).padStart(2, '0') : x))
    .join(':');
}

type QmpMessage = {
  return?: unknown;
  error?: { desc?: string };
  event?: string;
  data?: Record<string, unknown>;
};

/**
 * A QMP connection: JSON lines over QEMU's unix socket. Commands are answered in order;
 * events go to `onEvent`. QEMU serves one client at a time, so it is opened per operation.
 */
export class Qmp {
  private readonly socket: Socket;
  private buffer = '';
  private readonly waiting: Array<{ resolve: (v: unknown) => void; reject: (e: Error) => void }> = [];
  private readonly listeners = new Set<(m: QmpMessage) => void>();
  private closedErr: Error | undefined;

  private constructor(socket: Socket) {
    this.socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closedErr = new CoveError('unavailable', 'QMP connection closed');
      for (const w of this.waiting.splice(0)) w.reject(this.closedErr);
    });
  }

  /** Connects (retrying while QEMU has not made its socket yet) and negotiates capabilities. */
  static async open(path: string, timeoutMs = 10_000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const s = connect(path, () => resolve(s));
          s.once('error', reject);
        });
        const qmp = new Qmp(socket);
        await qmp.greeting();
        await qmp.execute('qmp_capabilities');
        return qmp;
      } catch (err) {
        if (Date.now() > deadline)
          throw new CoveError('unavailable', `QMP socket ${path}: ${String(err)}`, { cause: err });
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  }

  private greeting(): Promise<unknown> {
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      this.socket.write(`${JSON.stringify({ execute: command, ...(args && { arguments: args }) })}\n`);
    });
  }

  /** Resolves with the first event `match` accepts; rejects after `timeoutMs` or when QEMU goes away. */
  event(match: (m: QmpMessage) => boolean, timeoutMs: number, what: string): Promise<QmpMessage> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error, m?: QmpMessage) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        this.socket.off('close', onClose);
        if (err) reject(err);
        else resolve(m!);
      };
      const listener = (m: QmpMessage) => match(m) && done(undefined, m);
      const onClose = () => done(new CoveError('unavailable', `QEMU exited while waiting for ${what}`));
      const timer = setTimeout(
        () => done(new CoveError('deadline_exceeded', `no ${what} within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.listeners.add(listener);
      this.socket.once('close', onClose);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > 1 << 20) return this.close(); // QEMU's replies are small
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl).trim();
      this.buffer = this.buffer.slice(nl + 1);
      if (!line) continue;
      const m = JSON.parse(line) as QmpMessage & { QMP?: unknown };
      if (m.event) {
        for (const l of [...this.listeners]) l(m);
        continue;
      }
      const w = this.waiting.shift();
      if (!w) continue;
      if (m.error) w.reject(new CoveError('internal', `QMP: ${m.error.desc ?? 'error'}`));
      else w.resolve(m.return ?? m.QMP);
    }
  }
}
