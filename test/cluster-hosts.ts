import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Several hosts on one machine for the scale-out tests: a bridge on the host (`<prefix>-hb`,
 * `<net>.0.1/24`) and one network namespace per node (`<prefix>-n<i>`) joined to it by a veth,
 * with `<net>.0.<10+i>`. API replicas listen on the bridge's address, nodes on theirs. No
 * default route anywhere: nothing reaches beyond these addresses.
 */
export interface Hosts {
  bridgeAddress: string;
  nodeAddress(i: number): string;
  netns(i: number): string;
  remove(): void;
}

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });

export function makeHosts(prefix: string, net: string, count: number): Hosts {
  const bridge = `${prefix}-hb`;
  const hosts: Hosts = {
    bridgeAddress: `${net}.0.1`,
    nodeAddress: (i) => `${net}.0.${10 + i}`,
    netns: (i) => `${prefix}-n${i}`,
    remove() {
      for (let i = 0; i < count; i++) {
        try {
          ip('link', 'del', `${prefix}-v${i}`);
        } catch {
          /* not made */
        }
        try {
          ip('netns', 'del', hosts.netns(i));
        } catch {
          /* not made */
        }
      }
      try {
        ip('link', 'del', bridge);
      } catch {
        /* not made */
      }
    },
  };
  hosts.remove(); // a crashed run's leftovers
  ip('link', 'add', bridge, 'type', 'bridge');
  ip('addr', 'add', `${hosts.bridgeAddress}/24`, 'dev', bridge);
  ip('link', 'set', bridge, 'up');
  for (let i = 0; i < count; i++) {
    const ns = hosts.netns(i);
    ip('netns', 'add', ns);
    ip('link', 'add', `${prefix}-v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('link', 'set', `${prefix}-v${i}`, 'master', bridge, 'up');
    ip('-n', ns, 'addr', 'add', `${hosts.nodeAddress(i)}/24`, 'dev', 'eth0');
    ip('-n', ns, 'link', 'set', 'eth0', 'up');
    ip('-n', ns, 'link', 'set', 'lo', 'up');
  }
  return hosts;
}

const root = join(import.meta.dirname, '..');
const nodeBin = join(root, 'node_modules', '.bin', 'node');
const cli = join(root, 'src', 'cli', 'main.ts');

/** A `cove api` or `cove node` child process (optionally inside a netns), once it serves. */
export interface Proc {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** SIGKILL, and waits for the exit. */
  kill(): Promise<void>;
  /** SIGTERM, and SIGKILL after 20 s; waits for the exit. */
  stop(): Promise<void>;
}

export async function spawnCove(
  role: 'api' | 'node' | 'serve',
  env: Record<string, string>,
  netns?: string,
): Promise<Proc> {
  // A node's home outlives it (its sandboxes keep running there); an API replica has nothing in it.
  const home = env.COVE_HOME ?? mkdtempSync(join(tmpdir(), `cove-${role}-`));
  const [cmd, args] = netns
    ? ['nsenter', [`--net=/var/run/netns/${netns}`, nodeBin, cli, role]]
    : [nodeBin, [cli, role]];
  const child = spawn(cmd, args, {
    env: { ...process.env, COVE_LOG_LEVEL: 'warn', ...env, COVE_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let text = '';
  child.stdout.on('data', (d: Buffer) => (text += d.toString()));
  child.stderr.on('data', (d: Buffer) => (text += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (env.COVE_HOME === undefined) child.once('exit', () => rmSync(home, { recursive: true, force: true }));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setInterval(() => {
      const m = /serving on (http:\/\/\S+)/.exec(text);
      if (m) {
        clearInterval(timer);
        resolve(m[1]!);
      }
    }, 50);
    void exited.then(() => {
      clearInterval(timer);
      reject(new Error(`cove ${role} exited: ${text}`));
    });
  });
  return {
    child,
    url,
    output: () => text,
    async kill() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Runs `cove <args>` to the end (a client command: drain, list); its output, or throws with it. */
export function runCli(args: string[], env: Record<string, string>): string {
  return execFileSync(nodeBin, [cli, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    stdio: 'pipe',
  });
}
