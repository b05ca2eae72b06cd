import { mkdir, mkdtemp, readdir, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { must, mustRedirect, sh } from './sh.ts';
import { since } from './stats.ts';
import type { Subject } from './subject.ts';
import { BENCH_INSTANCE } from './instance.ts';

export interface CrunPeerOptions {
  /** The base template's rootfs, used read-only in place (`root.readonly`): never written. */
  rootfs: string;
  /** agent/build/cove-mount: its `exec-without-unified` runs `crun run` on hybrid cgroups. */
  mountHelper: string;
  /** crun's --root for the bench's containers only, e.g. /run/coveb-crun. */
  stateRoot: string;
  /** The host file to move in and out of the long-lived container, and where it comes back. */
  file: string;
  scratch: string;
}

/** cgroup directory (under each v1 hierarchy's root) holding the bench's crun containers. */
export const CGROUP_PARENT = `${BENCH_INSTANCE}-crun`;
const LONG_ID = `${BENCH_INSTANCE}-crun-long`;

/**
 * A minimal OCI config (what `crun spec` writes, as root): pid, mount, ipc, uts and network
 * namespaces (the network one empty: loopback only), NO user namespace, no seccomp, a
 * read-only root shared with the template, memory and pids limits like a sandbox's.
 */
export function ociConfig(rootfs: string, args: string[], cgroup: string): object {
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  return {
    ociVersion: '1.0.0',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, inheritable: [], permitted: caps, ambient: caps },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: rootfs, readonly: true },
    hostname: 'coveb',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
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
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
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
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] },
    ],
    linux: {
      cgroupsPath: `/${CGROUP_PARENT}/${cgroup}`,
      resources: {
        devices: [{ allow: false, access: 'rwm' }],
        memory: { limit: 512 * 1024 * 1024 },
        pids: { limit: 1024 },
      },
      namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
      maskedPaths: [
        '/proc/acpi',
        '/proc/kcore',
        '/proc/keys',
        '/proc/latency_stats',
        '/proc/timer_list',
        '/proc/sched_debug',
        '/sys/firmware',
        '/proc/scsi',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
}

/**
 * The peer "crun by hand": create + first command is one `crun run` of /bin/true (create,
 * start, wait, delete); a round trip is `crun exec` of /bin/true in a container running
 * `sleep infinity`. No network plumbing, overlay, agent or database: the floor under Cove.
 */
export async function crunPeer(opts: CrunPeerOptions): Promise<Subject> {
  const dir = await mkdtemp(join(tmpdir(), 'coveb-crun-'));
  const crun = (...args: string[]) => ['crun', '--root', opts.stateRoot, ...args];
  await mkdir(opts.stateRoot, { recursive: true, mode: 0o700 });
  for (const [name, args] of [
    ['run', ['/bin/true']],
    ['long', ['/bin/sleep', 'infinity']],
  ] as const) {
    await mkdir(join(dir, name));
    await writeFile(join(dir, name, 'config.json'), JSON.stringify(ociConfig(opts.rootfs, [...args], name)));
  }
  let seq = 0;
  const { size } = await stat(opts.file);
  const back = join(opts.scratch, 'crun-back.bin');

  return {
    runtime: 'crun',
    notes: [
      `crun ${opts.stateRoot}: \`crun run\` of /bin/true (create+start+wait+delete) via cove-mount exec-without-unified; round trip \`crun exec ID /bin/true\``,
      'namespaces pid, mount, ipc, uts, network (empty); no user namespace, no seccomp, no overlay (root.readonly on the template); v1 cgroups with memory+pids limits',
      'file transfer = `crun exec ID /bin/sh -c "cat > /tmp/…"` with stdin from the host file (/tmp is a tmpfs there), and `crun exec ID cat /tmp/…` with stdout to a host file',
    ],

    async create() {
      const id = `${BENCH_INSTANCE}-crun-${process.pid}-${seq++}`;
      const start = performance.now();
      await must(
        opts.mountHelper,
        ['exec-without-unified', ...crun('run', '--bundle', join(dir, 'run'), id)],
        { capture: false },
      );
      return { total: since(start) };
    },

    async startLong() {
      await must(
        opts.mountHelper,
        ['exec-without-unified', ...crun('run', '--detach', '--bundle', join(dir, 'long'), LONG_ID)],
        {
          capture: false,
        },
      );
    },

    async roundTrip() {
      const start = performance.now();
      await must('crun', ['--root', opts.stateRoot, 'exec', LONG_ID, '/bin/true'], { capture: false });
      return since(start);
    },

    async shellRoundTrip() {
      const start = performance.now();
      await must('crun', ['--root', opts.stateRoot, 'exec', LONG_ID, '/bin/bash', '-l', '-c', 'true'], {
        capture: false,
      });
      return since(start);
    },

    transfer: {
      async write() {
        const start = performance.now();
        await mustRedirect(
          'crun',
          ['--root', opts.stateRoot, 'exec', LONG_ID, '/bin/sh', '-c', 'cat > /tmp/coveb-file.bin'],
          { stdin: opts.file },
        );
        return since(start);
      },
      async read() {
        const start = performance.now();
        await mustRedirect(
          'crun',
          ['--root', opts.stateRoot, 'exec', LONG_ID, 'cat', '/tmp/coveb-file.bin'],
          {
            stdout: back,
          },
        );
        const ms = since(start);
        const got = (await stat(back)).size;
        if (got !== size) throw new Error(`crun read: ${got} bytes, wrote ${size}`);
        return ms;
      },
    },

    async cleanup() {
      const left: string[] = [];
      const listed = await sh('crun', ['--root', opts.stateRoot, 'list', '-q']);
      for (const id of listed.stdout.split('\n').filter(Boolean)) {
        await sh('crun', ['--root', opts.stateRoot, 'kill', id, 'KILL']);
        const del = await sh('crun', ['--root', opts.stateRoot, 'delete', '-f', id]);
        if (del.code !== 0) left.push(`crun container ${id} (${del.stderr.trim()})`);
      }
      await rmdir(opts.stateRoot).catch(() => left.push(`${opts.stateRoot} not empty`));
      for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [])) {
        const parent = join('/sys/fs/cgroup', hierarchy, CGROUP_PARENT);
        for (const leaf of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
          if (leaf.isDirectory())
            await rmdir(join(parent, leaf.name)).catch(() => left.push(join(parent, leaf.name)));
        }
        await rmdir(parent).catch((err: NodeJS.ErrnoException) => {
          if (err.code !== 'ENOENT') left.push(parent);
        });
      }
      await rm(dir, { recursive: true, force: true });
      return left;
    },
  };
}
