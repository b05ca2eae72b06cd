import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, lchown, lstat, mkdir, readdir } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent, type AgentClient } from '../src/agent-channel/client.ts';
import { isCoveError } from '../src/core/errors.ts';
import {
  agentSocket,
  provision,
  sandboxDir,
  teardown,
  UID_COUNT,
  uidBase,
  type HostDeps,
} from '../src/manager/host.ts';
import { createNetwork, NETNS_DIR } from '../src/network/network.ts';
import type { SandboxSpec } from '../src/runtime/driver.ts';
import { createRunscDriver } from '../src/runtime/runsc/runsc.ts';
import { createRuntimeSet, type RuntimeSet } from '../src/runtime/set.ts';
import { createTemplateStore } from '../src/templates/index.ts';
import { canRunSandboxes, hostLeftovers, testConfig, runscInstalled } from './helpers.ts';

const limits = { cpus: 1, memoryMiB: 512, pids: 1024 };
const newId = () => randomBytes(10).toString('hex');

/**
 * A server whose answer proves memory survived: its pid, a counter and an env var. It waits
 * with poll (socketserver), which gVisor can save, and lets the client close first, so that
 * no TIME_WAIT stays in the sandbox.
 */
const SERVER = `import os, socketserver
n = 0
class H(socketserver.StreamRequestHandler):
    def handle(self):
        global n
        while self.rfile.readline() not in (b"\\r\\n", b"\\n", b""):
            pass
        body = f"{os.getpid()} {n} {os.environ.get('SECRET')}".encode()
        n += 1
        self.wfile.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
        self.wfile.flush()
        try:
            self.request.recv(1)
        except OSError:
            pass
socketserver.TCPServer.allow_reuse_address = True
socketserver.TCPServer(("0.0.0.0", 8080), H).serve_forever()
`;

/**
 * The runsc driver's memory checkpoint and restore (capability 'checkpoint-memory'), below
 * the manager: a resume keeps files, env, processes with their pids and a listening server
 * with its memory; a restore under a new id, with a copy of the writable layer and a new
 * network namespace, is a fork that goes on from the same memory at its own address.
 */
describe.skipIf(!canRunSandboxes || !runscInstalled)('gVisor checkpoint and restore', () => {
  const config = testConfig({ runtime: 'runsc' });
  let deps: HostDeps;
  let runtime: RuntimeSet;
  let templateRootfs: string;
  const made: Array<{ id: string; slot: number }> = [];
  /** The sandbox the tests pause, resume and fork, made by the first. */
  let a: { id: string; slot: number; token: string; address: string };

  beforeAll(async () => {
    await mkdir(join(config.home, 'sandboxes'), { recursive: true, mode: 0o711 });
    await chmod(config.home, 0o711); // a sandbox's root walks through it (startCove does this)
    const network = createNetwork({ name: config.instance, prefix16: config.subnet16 });
    await network.init();
    runtime = createRuntimeSet(
      [
        createRunscDriver({
          stateRoot: config.runscRoot,
          cgroupParent: config.instance,
          statxShim: config.statxShim,
        }),
      ],
      'runsc',
    );
    await runtime.init();
    const templates = createTemplateStore({ home: config.templatesHome, recipesDir: config.recipesDir });
    templateRootfs = (await templates.get('base')).rootfs;
    deps = {
      runtime,
      network,
      sandboxesDir: join(config.home, 'sandboxes'),
      agentBinary: config.agentBinary,
      mountHelper: config.mountHelper,
    };
  });

  afterAll(async () => {
    for (const { id, slot } of made) await teardown(deps, id, slot);
    expect(hostLeftovers(config.instance, config.home)).toEqual([]);
  });

  function specOf(id: string, slot: number, token: string): SandboxSpec {
    const dir = sandboxDir(deps, id);
    return {
      id,
      runtime: 'runsc',
      rootfs: join(dir, 'rootfs'),
      bundleDir: dir,
      uidBase: uidBase(slot),
      uidCount: UID_COUNT,
      limits,
      agentBinary: deps.agentBinary,
      agentRunDir: join(dir, 'run'),
      agentToken: token,
      netns: join(NETNS_DIR, deps.network.slot(slot, id).netns),
    };
  }

  async function sandbox(slot: number) {
    const id = newId();
    const token = newId();
    made.push({ id, slot });
    await provision(deps, { id, slot, templateRootfs, limits, agentToken: token, runtime: 'runsc' });
    return { id, slot, token, address: deps.network.slot(slot, id).address };
  }

  const agentOf = (s: { id: string; token: string }) => connectAgent(agentSocket(deps, s.id), s.token);

  async function sh(agent: AgentClient, script: string): Promise<string> {
    let out = '';
    await new Promise<void>((resolve, reject) => {
      agent
        .spawn(
          {
            argv: ['/bin/sh', '-c', script],
            env: { PATH: '/usr/bin:/bin', SECRET: 'kept' },
            cwd: '/',
            uid: 0,
            gid: 0,
          },
          { onData: (_s, d) => (out += d.toString()), onExit: () => resolve() },
        )
        .catch(reject);
    });
    return out;
  }

  /** One request to the server; the socket is then reset, so no side keeps a TIME_WAIT. */
  function ask(address: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(8080, address, () => socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
      let text = '';
      socket.on('data', (d) => {
        text += d.toString();
        const body = /\r\n\r\n([\s\S]*)$/.exec(text)?.[1];
        if (body && /^\d+ \d+ \w+$/.test(body)) {
          socket.resetAndDestroy();
          resolve(body);
        }
      });
      socket.on('error', reject);
    });
  }

  async function askWhenUp(address: string): Promise<string> {
    for (let i = 0; ; i++) {
      try {
        return await ask(address);
      } catch (err) {
        if (i > 100) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** A copy of a sandbox's writable layer for another slot: its files move to that uid range. */
  async function copyUpper(from: string, fromSlot: number, to: string, toSlot: number): Promise<void> {
    execFileSync('cp', [
      '-a',
      '--',
      `${join(sandboxDir(deps, from), 'upper')}/.`,
      join(sandboxDir(deps, to), 'upper'),
    ]);
    const shift = uidBase(toSlot) - uidBase(fromSlot);
    const walk = async (path: string): Promise<void> => {
      const st = await lstat(path);
      await lchown(path, st.uid + shift, st.gid + shift);
      if (st.isDirectory()) for (const name of await readdir(path)) await walk(join(path, name));
    };
    for (const name of await readdir(join(sandboxDir(deps, to), 'upper')))
      await walk(join(sandboxDir(deps, to), 'upper', name));
  }

  it('resumes with files, env, processes (same pids) and a server’s memory', async () => {
    a = await sandbox(1);
    let agent = await agentOf(a);
    await agent.writeFile('/root/server.py', Buffer.from(SERVER), { uid: 0, gid: 0 });
    await sh(
      agent,
      'echo before > /root/state.txt; (python3 /root/server.py </dev/null >/dev/null 2>&1 &) ; (sleep 1000 &)',
    );
    const [pid, n0] = (await askWhenUp(a.address)).split(' ');
    expect(n0).toBe('0');
    const before = (await agent.listProcesses()).map((p) => p.pid).sort();
    agent.close();

    const image = join(config.home, 'images', a.id);
    await runtime.checkpoint(a.id, image);
    expect(await runtime.status(a.id)).not.toBe('running'); // stopped until runsc's state is gone
    await runtime.restore(specOf(a.id, a.slot, a.token), image);
    expect(await runtime.status(a.id)).toBe('running');

    agent = await agentOf(a);
    expect(await sh(agent, 'cat /root/state.txt; pgrep -x sleep')).toMatch(/^before\n\d+\n$/);
    expect((await agent.listProcesses()).map((p) => p.pid).sort()).toEqual(
      expect.arrayContaining(before) as unknown,
    );
    expect(await ask(a.address)).toBe(`${pid} 1 kept`); // same process, counter went on
    agent.close();
  });

  it('refuses to checkpoint while a connection over eth0 is open, and the sandbox lives on', async () => {
    const held = connect(8080, a.address);
    await new Promise((resolve, reject) => held.once('connect', resolve).once('error', reject));
    try {
      await expect(runtime.checkpoint(a.id, join(config.home, 'images', 'refused'))).rejects.toSatisfy(
        (e) => isCoveError(e, 'conflict') && /a TCP connection .* \(state 01\)/.test((e as Error).message),
      );
      expect(await runtime.status(a.id)).toBe('running');
    } finally {
      held.resetAndDestroy();
    }
  });

  it('refuses a Node server (epoll on a TCP socket), and the sandbox lives on', async () => {
    let agent = await agentOf(a);
    const server = "require('http').createServer((q, s) => s.end('x')).listen(8081, '0.0.0.0')";
    await sh(agent, `(node -e "${server}" </dev/null >/dev/null 2>&1 &)`);
    for (let i = 0; i < 100 && !(await sh(agent, 'cat /proc/net/tcp')).includes(':1F91 '); i++)
      await new Promise((r) => setTimeout(r, 100));
    agent.close(); // a checkpoint, refused or not, closes the agent's connections first
    await expect(runtime.checkpoint(a.id, join(config.home, 'images', 'refused'))).rejects.toSatisfy(
      (e) =>
        isCoveError(e, 'conflict') && /epoll on a TCP socket in pid \d+ \(node\)/.test((e as Error).message),
    );
    expect(await runtime.status(a.id)).toBe('running');
    agent = await agentOf(a); // listening again
    await sh(agent, 'pkill -x node; while pgrep -x node >/dev/null; do sleep 0.05; done');
    agent.close();
  });

  it('forks: a restore under a new id, layer and namespace goes on from the same memory', async () => {
    const image = join(config.home, 'images', `${a.id}-fork`);
    await runtime.checkpoint(a.id, image);
    await runtime.restore(specOf(a.id, a.slot, a.token), image); // the source goes on
    // The agent's token is in the image's memory: a fork answers to the source's token.
    const sourceToken = a.token;

    const b = { id: newId(), slot: 2 };
    made.push(b);
    const dir = sandboxDir(deps, b.id);
    await mkdir(dir, { mode: 0o711 }); // searchable: the sandbox's root walks through it (as provision)
    await mkdir(join(dir, 'run'), { mode: 0o700 });
    await chown(join(dir, 'run'), uidBase(b.slot), uidBase(b.slot));
    execFileSync(deps.mountHelper, ['up', templateRootfs, dir, String(uidBase(b.slot)), String(UID_COUNT)]);
    await copyUpper(a.id, a.slot, b.id, b.slot);
    const slot = deps.network.slot(b.slot, b.id);
    await deps.network.attach(slot, b.id);
    await runtime.restore(specOf(b.id, b.slot, sourceToken), image);

    const [pidA, nA] = (await ask(a.address)).split(' ');
    const [pidB, nB] = (await askWhenUp(slot.address)).split(' ');
    expect(pidB).toBe(pidA); // the same process, in another sandbox
    expect(nB).toBe(nA); // both go on from the checkpoint's counter, independently
    const agentB = await connectAgent(agentSocket(deps, b.id), sourceToken);
    expect(await sh(agentB, 'cat /root/state.txt; stat -c %U /root/state.txt')).toBe('before\nroot\n');
    await sh(agentB, 'echo fork-only > /root/state.txt');
    agentB.close();
    const agentA = await connectAgent(agentSocket(deps, a.id), sourceToken);
    expect(await sh(agentA, 'cat /root/state.txt')).toBe('before\n');
    agentA.close();
  });
});
