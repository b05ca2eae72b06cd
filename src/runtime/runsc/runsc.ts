import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import { basename, join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import { untilFile } from '../../core/file-event.ts';
import {
  agentPaths,
  type Capability,
  type RuntimeDriver,
  type SandboxSpec,
  type SandboxStatus,
} from '../driver.ts';
import { cgroupDirs, detectCgroupMode } from '../oci/cgroups.ts';
import type { OciSpec } from '../oci/spec.ts';
import { FLAGS, hidingProcSysNet, runLogged } from './invoke.ts';
import { putAddressesBack, readAddresses, restoreAddresses, type Eth0 } from './netns.ts';
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

/** In a checkpoint image: its agent listens again by the `listen` file alone (quiesce). */
const RELISTENS = 'cove-agent-relistens';
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

  const visibleProc = join(opts.stateRoot, '.proc');
  const hiding = (args: string[]) => hidingProcSysNet(runsc, global, visibleProc, args);

  /** Times one step for `onStep`. */
  async function step<T>(name: string, work: Promise<T>): Promise<T> {
    if (!opts.onStep) return work;
    const started = performance.now();
    const result = await work;
    opts.onStep(name, performance.now() - started);
    return result;
  }

  /** Each running sandbox's process, agent directory, bundle and namespace, as create and restore left them. */
  const known = new Map<string, { pid: number; runDir: string; bundleDir: string; netns?: string }>();
  const remember = (spec: SandboxSpec, pid: number) =>
    known.set(spec.id, {
      pid,
      runDir: spec.agentRunDir,
      bundleDir: spec.bundleDir,
      ...(spec.netns && { netns: spec.netns }),
    });

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
   * Asks the agent to close its socket and waits until it has (told by inotify). Resolves with
   * what the agent wrote beside it about the sandbox's sockets as it did (agent/src/probe.c;
   * an agent older than that, one restored from an older image, writes nothing), and whether
   * it removed the `listen` file left for it: an agent that does looks for that file to listen
   * again after a restore, and needs no SIGUSR1.
   */
  async function quiesce(id: string): Promise<{ probe?: string; relistens: boolean }> {
    const dir = await agentRunDir(id);
    const socket = join(dir, basename(agentPaths.socket));
    const probe = join(dir, 'probe');
    const listen = join(dir, 'listen');
    await rm(probe, { force: true });
    await writeFile(listen, '', { mode: 0o600 }); // ignored while it listens, removed as it quiesces
    await relistening.get(id); // a restore's SIGUSR1 must not arrive after this SIGUSR2
    await signalAgent(id, false);
    if (!(await untilFile(socket, false, QUIESCE_TIMEOUT_MS))) {
      await rm(listen, { force: true });
      await signalAgent(id, true).catch(() => undefined);
      throw new CoveError(
        'unavailable',
        `sandbox ${id}: the agent did not close its socket for the checkpoint`,
      );
    }
    const relistens = !existsSync(listen);
    await rm(listen, { force: true });
    const written = await readFile(probe, 'utf8').catch(() => undefined);
    await rm(probe, { force: true });
    return { ...(written !== undefined && { probe: written }), relistens };
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
  /** Checkpointed sandboxes whose eth0 holds its addresses again (removeCheckpointed). */
  const addressesBack = new Set<string>();

  async function removeState(id: string): Promise<void> {
    await run(runsc, ['--root', opts.stateRoot, 'delete', '--force', id]);
    known.delete(id);
    await removeCgroups(id);
  }

  /**
   * After a checkpoint: the sandbox process exits by itself; `runsc delete` polls every 100 ms
   * until it is gone, so it is called once the process has been reaped (by cove-run). Then
   * eth0 gets back the addresses runsc took into its own stack, for a restore in place
   * (capability 'restore-in-place') to find them there; when the caller released the
   * namespace meanwhile, that fails and nothing is put back.
   */
  async function removeCheckpointed(id: string): Promise<void> {
    const sandbox = known.get(id);
    const deadline = Date.now() + EXIT_TIMEOUT_MS;
    while (sandbox && alive(sandbox.pid) && Date.now() < deadline) await sleep(3);
    await removeState(id);
    if (!sandbox?.netns) return;
    const saved = await readFile(join(sandbox.bundleDir, 'netns.json'), 'utf8').catch(() => undefined);
    if (!saved) return;
    await putAddressesBack(sandbox.netns, JSON.parse(saved) as Eth0).then(
      () => addressesBack.add(id),
      () => undefined,
    );
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
    capabilities: new Set<Capability>(['checkpoint-memory', 'joins-netns', 'restore-in-place']),

    async init() {
      await mkdir(visibleProc, { recursive: true, mode: 0o700 });
      await run(runsc, ['--version']).catch((err: unknown) => {
        throw new CoveError('unavailable', `runsc is not installed (apt-get install runsc): ${String(err)}`);
      });
    },

    async create(spec: SandboxSpec) {
      addressesBack.delete(spec.id);
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
      remember(spec, pid);
      return { pid };
    },

    async start(id: string) {
      const [file, argv] = hiding(['start', id]);
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

    /** SIGUSR1, which every agent heeds (the `listen` file is for a restore, where none can
     * be sent before the agent runs): after a crash between quiesce and checkpoint. */
    async relisten(id: string) {
      await signalAgent(id, true);
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
      const { probe, relistens } = await step('quiesce', quiesce(id));
      try {
        refuseUnsavable(id, probe ?? (await step('probe (runsc exec)', execProbe(id))));
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
      if (relistens) await writeFile(join(imageDir, RELISTENS), '', { mode: 0o600 });
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
      // In place, after removeCheckpointed put eth0's addresses back: nothing to look at.
      if (!addressesBack.delete(spec.id)) {
        const saved = join(spec.bundleDir, 'netns.json');
        const addresses = existsSync(saved) ? (JSON.parse(await readFile(saved, 'utf8')) as Eth0) : undefined;
        const now = await restoreAddresses(spec.netns!, addresses);
        await writeFile(saved, JSON.stringify(now));
      }
      const [file, argv] = hiding([
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
      // (agent/src/loop.c, within 5 ms); an agent older than that (no RELISTENS in its image)
      // needs the SIGUSR1 of a runsc kill (~20-40 ms), sent in the background (the caller's
      // connect waits for the socket either way).
      await writeFile(join(spec.agentRunDir, 'listen'), '', { mode: 0o600 });
      await step('runsc restore', runLogged('restore', file, argv, spec.bundleDir));
      const pid = readPid(spec.bundleDir, spec.id);
      remember(spec, pid);
      if (existsSync(join(imageDir, RELISTENS))) return { pid };
      const signalled = signalAgent(spec.id, true)
        .catch(() => undefined)
        .finally(() => relistening.delete(spec.id));
      relistening.set(spec.id, signalled);
      return { pid };
    },
  };
}
