import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import { runnerAvailable, runThroughHelper } from '../../core/runner.ts';
import type { Capability, RuntimeDriver, SandboxSpec, SandboxStatus } from '../driver.ts';
import { cgroupDirs, detectCgroupMode, isFrozen, setFrozen, type CgroupMode } from './cgroups.ts';
import { sandboxOciSpec } from './spec.ts';

export interface CrunOptions {
  /** crun's state directory: Cove's own, so that `list` shows only Cove's sandboxes. */
  stateRoot: string;
  /** The cove-mount helper, used as the hybrid-cgroup wrapper of `crun create`. */
  mountHelper: string;
  /** cgroup directory under each hierarchy's root that holds the sandboxes (the instance name). */
  cgroupParent: string;
  binary?: string;
}

/** The OCI driver for crun: namespaces + cgroups + seccomp, one runtime exec per step. */
export function createCrunDriver(opts: CrunOptions): RuntimeDriver {
  const crun = opts.binary ?? 'crun';
  const mode: CgroupMode = detectCgroupMode();
  const global = ['--root', opts.stateRoot];

  // Runs crun with its output (and the container's stdio) going to `log`, so that the
  // container's PID 1 holds no pipe of ours and outlives this process.
  function crunLogged(args: string[], log: string, wrapHybrid: boolean): Promise<void> {
    const [file, argv] =
      wrapHybrid && mode === 'hybrid'
        ? [opts.mountHelper, ['exec-without-unified', crun, ...global, ...args]]
        : [crun, [...global, ...args]];
    const failed = (code: number | null) => {
      const tail = readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ');
      return new CoveError('internal', `crun ${args[0]} failed (${code}): ${tail}`);
    };
    if (runnerAvailable()) {
      return runThroughHelper(file, argv, { log }).then((ended) => {
        if (ended.code !== 0) throw failed(ended.code);
      });
    }
    const fd = openSync(log, 'a', 0o600);
    return new Promise<void>((resolve, reject) => {
      const child = spawn(file, argv, { stdio: ['ignore', fd, fd], detached: false });
      closeSync(fd);
      child.on('error', reject);
      child.on('exit', (code) => {
        if (code === 0) return resolve();
        reject(failed(code));
      });
    });
  }

  async function removeCgroups(id: string): Promise<void> {
    for (const dir of cgroupDirs(mode, opts.cgroupParent, id)) {
      await rmdir(dir).catch(async (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return;
        if (err.code !== 'EBUSY') throw err;
        await killCgroup(dir);
        await rmdir(dir);
      });
    }
  }

  return {
    name: 'crun',
    capabilities: new Set<Capability>(['pause', 'agent-on-host']),

    async init() {
      await mkdir(opts.stateRoot, { recursive: true, mode: 0o700 });
    },

    async create(spec: SandboxSpec) {
      // A boot id of this boot only: the host's is the same for every sandbox and every boot,
      // and E2B's filesystem-only resume is told from a memory one by a new boot id.
      const bootId = join(spec.bundleDir, 'boot_id');
      await writeFile(bootId, `${randomUUID()}\n`, { mode: 0o444 });
      const config = sandboxOciSpec(spec, opts.cgroupParent, bootId);
      await writeFile(join(spec.bundleDir, 'config.json'), JSON.stringify(config));
      const pidFile = join(spec.bundleDir, 'pid');
      await crunLogged(
        ['create', '--bundle', spec.bundleDir, '--pid-file', pidFile, spec.id],
        join(spec.bundleDir, 'runtime.log'),
        true,
      );
      const pid = Number(readFileSync(pidFile, 'utf8').trim());
      if (!Number.isInteger(pid) || pid <= 1)
        throw new CoveError('internal', `crun wrote a bad pid file for ${spec.id}`);
      return { pid };
    },

    async start(id: string) {
      await run(crun, [...global, 'start', id]);
    },

    async status(id: string): Promise<SandboxStatus> {
      try {
        const { stdout } = await run(crun, [...global, 'state', id]);
        const status = (JSON.parse(stdout) as { status?: string }).status;
        if (status === 'running' && (await isFrozen(mode, opts.cgroupParent, id))) return 'paused';
        if (status === 'created' || status === 'running' || status === 'paused' || status === 'stopped')
          return status;
        return 'missing';
      } catch {
        return 'missing';
      }
    },

    async list() {
      // crun keeps one directory per container under its state root.
      const entries = await readdir(opts.stateRoot, { withFileTypes: true }).catch(() => []);
      return entries.filter((e) => e.isDirectory()).map((e) => e.name);
    },

    // The cgroup freezer directly: `crun pause` costs an exec and reads the same file.
    async freeze(id: string) {
      await setFrozen(mode, opts.cgroupParent, id, true);
    },

    async thaw(id: string) {
      await setFrozen(mode, opts.cgroupParent, id, false);
    },

    async destroy(id: string) {
      // A frozen sandbox's processes take no signal, SIGKILL included, until they are thawed.
      if (await isFrozen(mode, opts.cgroupParent, id)) await setFrozen(mode, opts.cgroupParent, id, false);
      // delete --force kills PID 1; the kernel then kills every process of its pid namespace.
      await run(crun, [...global, 'delete', '--force', id]).catch(async (err: unknown) => {
        if (!(await this.list()).includes(id)) return; // already gone
        throw err;
      });
      await removeCgroups(id);
      await rm(join(opts.stateRoot, id), { recursive: true, force: true });
    },
  };
}

/** Kills whatever is left in a v1/v2 cgroup directory (a fork bomb that outran delete). */
async function killCgroup(dir: string): Promise<void> {
  const procs = await readdir(dir).then(() => readFileSync(join(dir, 'cgroup.procs'), 'utf8'));
  for (const pid of procs.split('\n').filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone already
    }
  }
  for (let i = 0; i < 100 && readFileSync(join(dir, 'cgroup.procs'), 'utf8').trim() !== ''; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
}
