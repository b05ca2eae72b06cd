import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { chown, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { joinCgroup, removeCgroup } from './cgroup.ts';
import { Qmp, qemuArgv, type VmArgs } from './qemu.ts';

/** What Cove keeps of one VM beside its QMP socket and pid (`<stateRoot>/<id>/vm.json`). */
export interface VmState {
  bundleDir: string;
  netns?: string;
  /** The template's saved VM (template-vm.ts) whose disk backs this VM's layer. */
  backing?: string;
  /** The VM was restored from a saved state: start() gives it its identity (identity.ts). */
  restored?: { hostname: string; address?: string; gateway?: string; mac?: string };
  /** What QEMU was launched with, and the saved state it loaded: a VM not ready in time is launched again (ready.ts). */
  args?: VmArgs;
  from?: { file: string; ignoreShared: boolean };
  /** A sandbox's VM: QEMU goes into the cgroup `<cgroup>/<id>` its metrics are read from (cgroup.ts). */
  cgroup?: string;
}

/**
 * The QEMU processes of one driver: each VM has a directory `<stateRoot>/<id>` (QMP socket,
 * pid, vm.json) and runs in its own session, so it outlives Cove and is adopted again.
 */
export function createVms(stateRoot: string, qemu: string) {
  const stateDir = (id: string) => join(stateRoot, id);
  /** The one directory QEMU's own user may write (migration sockets): `-runas` took root from it. */
  const ioDir = (id: string) => join(stateDir(id), 'io');
  const qmpPath = (id: string) => join(stateDir(id), 'qmp.sock');

  /** QEMU's pid when it still runs this VM (its command line names the QMP socket). */
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

  const readState = async (id: string) =>
    JSON.parse(await readFile(join(stateDir(id), 'vm.json'), 'utf8')) as VmState;
  const writeState = (id: string, state: VmState) =>
    writeFile(join(stateDir(id), 'vm.json'), JSON.stringify(state));

  /** Starts QEMU for VM `id` (in `netns` when given) and waits for its QMP socket. */
  async function launch(id: string, state: VmState, args: VmArgs): Promise<number> {
    const dir = stateDir(id);
    await mkdir(dir, { recursive: true, mode: 0o711 }); // QEMU's user walks through to io/
    await mkdir(ioDir(id), { recursive: true, mode: 0o700 });
    if (args.runAs) await chown(ioDir(id), args.runAs.uid, args.runAs.gid);
    await writeState(id, { ...state, args });
    const argv = qemuArgv(args);
    const [file, full] = state.netns
      ? ['nsenter', [`--net=${state.netns}`, '--', qemu, ...argv]]
      : [qemu, argv];
    const log = join(state.bundleDir, 'runtime.log');
    const fd = openSync(log, 'a', 0o600);
    // Its own session, stdio on a file: the VM outlives Cove and is adopted again at start.
    const child = spawn(file, full, { stdio: ['ignore', fd, fd], detached: true });
    closeSync(fd);
    child.unref();
    const pid = child.pid;
    if (!pid) throw new CoveError('internal', `QEMU did not start: ${logTail(log)}`);
    await writeFile(join(dir, 'pid'), String(pid));
    if (state.cgroup) await joinCgroup(state.cgroup, id, pid);
    // nsenter execs QEMU in place: the same pid. The QMP socket proves QEMU took its arguments.
    await Qmp.open(qmpPath(id), 10_000).then(
      (q) => q.close(),
      (err: unknown) => {
        throw new CoveError('internal', `QEMU failed for ${id}: ${logTail(log) || String(err)}`);
      },
    );
    return pid;
  }

  /** Starts the vCPUs and waits until the agent has opened its port (QMP event VSERPORT_CHANGE). */
  async function bootToAgent(id: string, timeoutMs: number): Promise<void> {
    await withQmp(id, async (q) => {
      const open = q.event(
        (m) => m.event === 'VSERPORT_CHANGE' && m.data?.open === true,
        timeoutMs,
        'agent port',
      );
      await q.execute('cont');
      await open.catch(async (err: unknown) => {
        const vm = await readState(id);
        throw new CoveError(
          'unavailable',
          `VM ${id} did not boot: ${String(err)}; console: ${logTail(join(vm.bundleDir, 'console.log'))}`,
        );
      });
    });
  }

  /** Kills the VM's QEMU if it runs; its state directory stays (the VM reads as stopped). */
  async function kill(id: string): Promise<void> {
    const pid = livePid(id);
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 500 && livePid(id) !== undefined; i++) await new Promise((r) => setTimeout(r, 10));
    if (livePid(id) !== undefined) throw new CoveError('internal', `QEMU ${pid} of ${id} did not exit`);
  }

  /** Kills the VM's QEMU (if it runs) and removes its state directory. Idempotent. */
  async function destroy(id: string): Promise<void> {
    await kill(id);
    const { cgroup } = await readState(id).catch(() => ({}) as VmState);
    if (cgroup) await removeCgroup(cgroup, id);
    await rm(stateDir(id), { recursive: true, force: true });
  }

  return {
    stateDir,
    ioDir,
    qmpPath,
    livePid,
    withQmp,
    logTail,
    readState,
    writeState,
    launch,
    bootToAgent,
    kill,
    destroy,
  };
}

export type Vms = ReturnType<typeof createVms>;
