import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { sh } from './sh.ts';

export interface Machine {
  host: string;
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  os: string;
  cgroups: 'v1' | 'v2' | 'hybrid';
  node: string;
  crun: string;
  runc: string;
  podman: string;
  /** The commit benchmarked, with `+dirty` when the tree has changes. */
  commit: string;
}

async function firstLine(file: string, args: string[]): Promise<string> {
  const r = await sh(file, args).catch(() => ({ code: 1, stdout: '', stderr: '' }));
  return r.code === 0 ? (r.stdout.split('\n')[0] ?? '').trim() : 'absent';
}

export async function describeMachine(repo: string): Promise<Machine> {
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8');
  const osRelease = await readFile('/etc/os-release', 'utf8').catch(() => '');
  const unified = await readFile('/proc/self/mountinfo', 'utf8');
  const mounts = unified.split('\n').map((l) => l.split(' '));
  const cgroup2At = mounts.find((m) => m.includes('cgroup2'))?.[4];
  const commit = await firstLine('git', ['-C', repo, 'rev-parse', '--short=12', 'HEAD']);
  const dirty =
    (await sh('git', ['-C', repo, 'status', '--porcelain', '--untracked-files=no'])).stdout.trim() !== '';
  return {
    host: os.hostname(),
    cores: os.cpus().length,
    cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? os.cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    os: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1] ?? os.type(),
    cgroups: cgroup2At === '/sys/fs/cgroup' ? 'v2' : cgroup2At ? 'hybrid' : 'v1',
    node: process.version,
    crun: await firstLine('crun', ['--version']),
    runc: await firstLine('runc', ['--version']),
    podman: await firstLine('podman', ['--version']),
    commit: commit + (dirty ? '+dirty' : ''),
  };
}
