import { closeSync, existsSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { basename, join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import { runnerAvailable, runThroughHelper } from '../../core/runner.ts';
import {
  agentPaths,
  type Capability,
  type RuntimeDriver,
  type SandboxSpec,
  type SandboxStatus,
} from '../driver.ts';
import { cgroupDirs, detectCgroupMode } from '../oci/cgroups.ts';
import type { OciSpec } from '../oci/spec.ts';
import { readAddresses, restoreAddresses } from './netns.ts';
import { runscOciSpec, statxShimPath } from './spec.ts';
import { checkpointBlockers, PROBE_SCRIPT } from './tcp.ts';

export interface RunscOptions {
  /** runsc's state directory: Cove's own, so that `list` shows only Cove's sandboxes. */
  stateRoot: string;
  /** cgroup directory under each hierarchy's root that holds the sandboxes (the instance name). */
  cgroupParent: string;
  /** agent/build/cove-statx.so (agent/shim/statx.c). */
  statxShim: string;
  binary?: string;
  /** Told how long each step of a checkpoint and a restore took (bench/runsc.ts prints them). */
  onStep?: (step: string, ms: number) => void;
}

/**
 * Flags of every runsc command (docs/runtimes.md). `--host-uds=all` lets the agent bind its
 * socket in the bind-mounted /.cove/run as a host socket the host can connect to (gVisor
 * refuses host sockets otherwise; with `create` alone the agent's bind fails with EPERM). `--overlay2=none`: writes go to the overlay Cove mounted,
 * on disk (a fork copies it), not to a memory overlay inside the Sentry. ptrace platform and
 * `--network=sandbox` (gVisor's own network stack on the namespace's eth0) are the defaults.
 */
const FLAGS = ['--host-uds=all', '--overlay2=none'];

/** How long the agent may take to close its socket when asked to before a checkpoint. */
const QUIESCE_TIMEOUT_MS = 5_000;
/** How long a checkpointed sandbox's process may take to exit before `runsc delete` waits for it. */
const EXIT_TIMEOUT_MS = 2_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a host process exists (a zombie does too, until reaped). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The gVisor driver: the sandbox's system calls go to gVisor's user-space kernel (the Sentry),
 * its files through a gofer process, its packets through gVisor's network stack; the host
 * kernel sees only the few calls runsc's own seccomp filters allow. Same bundle as crun.
 */
export function createRunscDriver(opts: RunscOptions): RuntimeDriver {
  const runsc = opts.binary ?? 'runsc';
  const global = ['--root', opts.stateRoot, ...FLAGS];
  const mode = detectCgroupMode();

  // runsc's root-namespace guard checks only that /proc/sys/net/core/rmem_default exists,
  // which is true in every network namespace on recent kernels, so start/run/restore refuse
  // ("cannot run with network enabled in root network namespace") unless /proc/sys/net is
  // hidden from them; a tmpfs over /proc/sys/net/core is not enough. runsc must still run in
  // the root network namespace: its control socket is bound in the caller's namespace.
  // `restore` also makes the sandbox process, which mounts a fresh proc inside the sandbox's
  // user namespace; the kernel allows that only while some proc mount is fully visible (no
  // mount over any part of it), hence a second, untouched proc beside the hidden one.
  const visibleProc = join(opts.stateRoot, '.proc');
  function hidingProcSysNet(args: string[]): [string, string[]] {
    const script = `mount -t tmpfs none /proc/sys/net && mount -t proc proc ${visibleProc} && exec "$@"`;
    return [
      'unshare',
      ['-m', '--propagation', 'private', 'sh', '-c', script, 'sh', runsc, ...global, ...args],
    ];
  }

  // Runs runsc with its stdio on `<bundle>/runtime.log`: for create and restore that file is
  // the container's stdio too (the agent's stderr), which PID 1 must hold instead of a pipe
  // of ours, and which gVisor writes at its own offset (so nothing else writes it later).
  // Through cove-run when built: the sandbox and gofer processes runsc leaves behind are then
  // its children, reaped the moment they exit (agent/run/cove-run.c); `runsc delete` and
  // `kill` wait for that, ~1.2 s when the host's PID 1 is the reaper.
  async function runLogged(what: string, file: string, argv: string[], bundleDir: string): Promise<void> {
    const log = join(bundleDir, 'runtime.log');
    const code = runnerAvailable()
      ? (await runThroughHelper(file, argv, { log })).code
      : await new Promise<number | null>((resolve, reject) => {
          const fd = openSync(log, 'a', 0o600);
          const child = spawn(file, argv, { stdio: ['ignore', fd, fd] });
          closeSync(fd);
          child.on('error', reject);
          child.on('exit', resolve);
        });
    if (code === 0) return;
    const tail = readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ');
    throw new CoveError('internal', `runsc ${what} failed (${code}): ${tail}`);
  }

  /** Times one step for `onStep`. */
  async function step<T>(name: string, work: Promise<T>): Promise<T> {
    if (!opts.onStep) return work;
    const started = performance.now();
    const result = await work;
    opts.onStep(name, performance.now() - started);
    return result;
  }

  /** Each running sandbox's process and agent directory, as create and restore left them. */
  const known = new Map<string, { pid: number; runDir: string }>();

  // gVisor has no /proc/sys/kernel/random/boot_id: the sandbox gets a file of Cove's there, new
  // at each boot (`fresh`) and kept by a restore, so a filesystem-only resume is told from a
  // memory one as on crun (oci/spec.ts withBootId) and in E2B's VMs.
  async function writeBundle(spec: SandboxSpec, fresh: boolean): Promise<void> {
    const preloadFile = join(spec.bundleDir, 'ld.so.preload');
    await writeFile(preloadFile, `${statxShimPath}\n`, { mode: 0o644 });
    const bootId = join(spec.bundleDir, 'boot_id');
    if (fresh || !existsSync(bootId)) await writeFile(bootId, `${randomUUID()}\n`, { mode: 0o444 });
    const shim = { binary: opts.statxShim, preloadFile };
    const config = runscOciSpec(spec, opts.cgroupParent, shim, bootId);
    await writeFile(join(spec.bundleDir, 'config.json'), JSON.stringify(config));
  }

  function readPid(bundleDir: string, id: string): number {
    const pid = Number(readFileSync(join(bundleDir, 'pid'), 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 1)
      throw new CoveError('internal', `runsc wrote a bad pid file for ${id}`);
    return pid;
  }

  async function state(id: string): Promise<{ status?: string; bundle?: string } | undefined> {
    try {
      const { stdout } = await run(runsc, ['--root', opts.stateRoot, 'state', id]);
      return JSON.parse(stdout) as { status?: string; bundle?: string };
    } catch {
      return undefined;
    }
  }

  /** The host directory bind-mounted at /.cove/run, read back from the sandbox's bundle. */
  async function agentRunDir(id: string): Promise<string> {
    const runDir = known.get(id)?.runDir;
    if (runDir) return runDir;
    const bundle = (await state(id))?.bundle;
    if (!bundle) throw new CoveError('not_found', `runsc knows no sandbox ${id}`);
    const config = JSON.parse(await readFile(join(bundle, 'config.json'), 'utf8')) as OciSpec;
    const mount = config.mounts.find((m) => m.destination === agentPaths.runDir);
    if (!mount) throw new CoveError('internal', `sandbox ${id}: no agent directory in its bundle`);
    return mount.source;
  }

  // The agent closes its socket on SIGUSR2 and listens again on SIGUSR1 (agent/src/loop.c).
  async function signalAgent(id: string, listen: boolean): Promise<void> {
    await run(runsc, ['--root', opts.stateRoot, 'kill', id, listen ? 'USR1' : 'USR2']);
  }

  /**
   * Asks the agent to close its socket and waits until it has. Resolves with what the agent
   * wrote beside it about the sandbox's sockets as it did (agent/src/probe.c); an agent older
   * than that (one restored from an older image) writes nothing.
   */
  async function quiesce(id: string): Promise<string | undefined> {
    const dir = await agentRunDir(id);
    const socket = join(dir, basename(agentPaths.socket));
    const probe = join(dir, 'probe');
    await rm(probe, { force: true });
    await relistening.get(id); // a restore's SIGUSR1 must not arrive after this SIGUSR2
    await signalAgent(id, false);
    const deadline = Date.now() + QUIESCE_TIMEOUT_MS;
    while (existsSync(socket)) {
      if (Date.now() > deadline) {
        await signalAgent(id, true).catch(() => undefined);
        throw new CoveError(
          'unavailable',
          `sandbox ${id}: the agent did not close its socket for the checkpoint`,
        );
      }
      await sleep(2);
    }
    const written = await readFile(probe, 'utf8').catch(() => undefined);
    await rm(probe, { force: true });
    return written;
  }

  /** PROBE_SCRIPT's output from a shell in the sandbox (~70 ms: four programs under ptrace). */
  async function execProbe(id: string): Promise<string> {
    const argv = ['--root', opts.stateRoot, 'exec', id, '/bin/sh', '-c', PROBE_SCRIPT];
    return (await run(runsc, argv)).stdout;
  }

  // A checkpoint that meets a TCP endpoint gVisor cannot save kills the sandbox (tcp.ts).
  function refuseUnsavable(id: string, probe: string): void {
    const blockers = checkpointBlockers(probe);
    if (blockers.length > 0)
      throw new CoveError(
        'conflict',
        `sandbox ${id} cannot be saved with its memory on this gVisor: ${blockers.slice(0, 3).join('; ')} (docs/runtimes.md)`,
      );
  }

  /** The SIGUSR1 a restore sends in the background (for agents without the `listen` file), by id. */
  const relistening = new Map<string, Promise<void>>();

  /** Deletions of checkpointed sandboxes still under way, by id. */
  const deletions = new Map<string, Promise<void>>();

  async function removeState(id: string): Promise<void> {
    await run(runsc, ['--root', opts.stateRoot, 'delete', '--force', id]);
    known.delete(id);
    await removeCgroups(id);
  }

  /**
   * After a checkpoint: the sandbox process exits by itself; `runsc delete` polls every 100 ms
   * until it is gone, so it is called once the process has been reaped (by cove-run).
   */
  async function removeCheckpointed(id: string): Promise<void> {
    const pid = known.get(id)?.pid;
    const deadline = Date.now() + EXIT_TIMEOUT_MS;
    while (pid !== undefined && alive(pid) && Date.now() < deadline) await sleep(3);
    await removeState(id);
  }

  async function removeCgroups(id: string): Promise<void> {
    for (const dir of cgroupDirs(mode, opts.cgroupParent, id)) {
      await rmdir(dir).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'ENOENT') throw err;
      });
    }
  }

  async function list(): Promise<string[]> {
    // runsc keeps `<container>_sandbox:<sandbox>.state` (and a .lock) per container.
    const names = await readdir(opts.stateRoot).catch(() => [] as string[]);
    return [...new Set(names.filter((n) => n.endsWith('.state')).map((n) => n.split('_sandbox:')[0] ?? n))];
  }

  return {
    name: 'runsc',
    capabilities: new Set<Capability>(['checkpoint-memory', 'joins-netns']),

    async init() {
      await mkdir(visibleProc, { recursive: true, mode: 0o700 });
      await run(runsc, ['--version']).catch((err: unknown) => {
        throw new CoveError('unavailable', `runsc is not installed (apt-get install runsc): ${String(err)}`);
      });
    },

    async create(spec: SandboxSpec) {
      await writeBundle(spec, true);
      // What restore() needs to give back: runsc moves eth0's addresses into its own stack.
      await writeFile(join(spec.bundleDir, 'netns.json'), JSON.stringify(await readAddresses(spec.netns!)));
      await runLogged(
        'create',
        runsc,
        [...global, 'create', '--bundle', spec.bundleDir, '--pid-file', join(spec.bundleDir, 'pid'), spec.id],
        spec.bundleDir,
      );
      const pid = readPid(spec.bundleDir, spec.id);
      known.set(spec.id, { pid, runDir: spec.agentRunDir });
      return { pid };
    },

    async start(id: string) {
      const [file, argv] = hidingProcSysNet(['start', id]);
      await run(file, argv);
    },

    async status(id: string): Promise<SandboxStatus> {
      // A checkpointed sandbox is stopped even while runsc, until its process is reaped, may
      // still call it running (seen under load right after `runsc checkpoint` returned).
      if (deletions.has(id)) return 'stopped';
      const status = (await state(id))?.status;
      if (status === 'created' || status === 'running' || status === 'paused' || status === 'stopped')
        return status;
      return 'missing';
    },

    list,

    async destroy(id: string) {
      await deletions.get(id)?.catch(() => undefined);
      // Nothing to delete (a checkpoint's deletion finished, a pause's or kill's repeat): no runsc.
      if (!(await list()).includes(id)) return removeCgroups(id);
      // delete --force stops the Sentry and the gofer: every process of the sandbox goes with them.
      await run(runsc, ['--root', opts.stateRoot, 'delete', '--force', id]).catch(async (err: unknown) => {
        if (!(await list()).includes(id)) return; // already gone
        throw err;
      });
      known.delete(id);
      await removeCgroups(id);
    },

    /**
     * Saves the sandbox into `imageDir` and stops it; its runtime state is then removed, so
     * that restore() may reuse the id. gVisor cannot save a socket bound on the host, nor (on
     * this version) an open TCP connection over eth0 or a TCP socket watched by epoll (tcp.ts):
     * it then fails and the sandbox dies. So those are refused first (conflict: the sandbox
     * keeps running), the agent is asked to close its socket, and the caller must have reset
     * its own connections to the sandbox's servers (a reset leaves no TIME_WAIT, which gVisor
     * does not list).
     */
    async checkpoint(id: string, imageDir: string) {
      await mkdir(imageDir, { recursive: true, mode: 0o700 });
      // What could stop the checkpoint is looked at as the agent quiesces (it writes it); when
      // something would, the agent is told to listen again and the sandbox runs on.
      const written = await step('quiesce', quiesce(id));
      try {
        refuseUnsavable(id, written ?? (await step('probe (runsc exec)', execProbe(id))));
      } catch (err) {
        await signalAgent(id, true).catch(() => undefined);
        throw err;
      }
      try {
        const argv = ['--root', opts.stateRoot, 'checkpoint', '--image-path', imageDir, id];
        await step('runsc checkpoint', run(runsc, argv, { timeoutMs: 120_000 }));
      } catch (err) {
        const alive = (await state(id))?.status === 'running';
        if (alive) await signalAgent(id, true).catch(() => undefined);
        throw new CoveError(
          'internal',
          `checkpoint of sandbox ${id} failed${alive ? '' : ' and stopped it'}: ${String(err).split('\n')[0]}`,
          { cause: err },
        );
      }
      // The checkpointed sandbox process exits at once; its state is removed in the background,
      // awaited by whatever needs the id next (restore, destroy).
      const deleting = step('delete (background)', removeCheckpointed(id)).finally(() =>
        deletions.delete(id),
      );
      deletions.set(id, deleting);
      deleting.catch(() => undefined); // awaited (and its error seen) by the next user of the id
    },

    /**
     * Brings a checkpoint back as sandbox `spec.id` (the same id for a resume, a new one with a
     * copy of the writable layer and a new namespace for a fork). eth0's addresses are put back
     * first when they are gone (a resume into the namespace runsc emptied); a fresh namespace
     * keeps its own, which is how a fork gets its new address.
     */
    async restore(spec: SandboxSpec, imageDir: string) {
      await deletions.get(spec.id);
      // A stopped state left by a checkpoint whose deletion a restart of Cove cut short.
      if ((await list()).includes(spec.id)) await removeState(spec.id);
      await writeBundle(spec, false);
      const saved = join(spec.bundleDir, 'netns.json');
      const addresses = existsSync(saved)
        ? (JSON.parse(await readFile(saved, 'utf8')) as Awaited<ReturnType<typeof readAddresses>>)
        : undefined;
      const now = await restoreAddresses(spec.netns!, addresses);
      await writeFile(saved, JSON.stringify(now));
      const [file, argv] = hidingProcSysNet([
        'restore',
        '--detach',
        '--bundle',
        spec.bundleDir,
        '--image-path',
        imageDir,
        '--pid-file',
        join(spec.bundleDir, 'pid'),
        spec.id,
      ]);
      // The agent was saved with its socket closed: it listens again when it finds this file
      // (agent/src/loop.c, within 5 ms); an agent older than that needs the SIGUSR1, sent in
      // the background (the caller's connect waits for the socket either way).
      await writeFile(join(spec.agentRunDir, 'listen'), '', { mode: 0o600 });
      await step('runsc restore', runLogged('restore', file, argv, spec.bundleDir));
      const pid = readPid(spec.bundleDir, spec.id);
      known.set(spec.id, { pid, runDir: spec.agentRunDir });
      const signalled = signalAgent(spec.id, true)
        .catch(() => undefined)
        .finally(() => relistening.delete(spec.id));
      relistening.set(spec.id, signalled);
      return { pid };
    },
  };
}
