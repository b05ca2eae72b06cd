import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent } from '../src/agent-channel/index.ts';
import { FrameDecoder, R, T, Writer } from '../src/agent-channel/protocol.ts';
import { createMicrovmDriver, type MicrovmDriver } from '../src/runtime/microvm/microvm.ts';
import { canRunSandboxes, testConfig } from './helpers.ts';
import { microvmReady } from './microvm-host.ts';

const config = testConfig({ runtime: 'microvm' });
const qemuInstalled = microvmReady(config);

/**
 * The agent's virtio-serial port (agent/src/port.c), through the driver with the test as the
 * host: a clone of the template's saved VM, connected to again and again. The port is one
 * byte stream for successive hosts, and the guest sees a host's open/close after bytes that
 * came later (a new host's AUTH before the old host's close): a close must not end the new
 * host's session (before: 1-2 of ~45 creates failed with 'agent did not answer AUTH', the
 * manager connecting right after the identity step closed). A host whose AUTH comes late is
 * answered too (before: the agent stopped reading the port 2 s after it opened).
 */
describe.skipIf(!canRunSandboxes || !qemuInstalled)("a microVM agent's port", () => {
  const home = mkdtempSync(join(tmpdir(), 'cove-port-test-'));
  const id = `port${process.pid}`;
  const bundleDir = join(home, 'sandbox');
  const socket = join(bundleDir, 'run', 'agent.sock');
  // Its own namespace, eth0 a veth whose peer stays inside: a clone has its template VM's NIC.
  const netns = `cove-port-test-${process.pid}`;
  const ip = (...args: string[]) => execFileSync('ip', ['-n', netns, ...args]);
  let driver: MicrovmDriver;

  beforeAll(async () => {
    mkdirSync(join(bundleDir, 'run'), { recursive: true });
    execFileSync('ip', ['netns', 'add', netns]);
    ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0');
    ip('addr', 'add', '192.0.2.2/24', 'dev', 'eth0'); // TEST-NET-1: nothing leaves the namespace
    ip('link', 'set', 'eth0', 'up');
    driver = createMicrovmDriver({
      stateRoot: join(home, 'vms'), // not the instance's: a Cove of it would adopt this VM
      cacheDir: config.microvm.cacheDir,
      agentBinary: config.agentBinary,
    });
    await driver.init();
    await driver.create({
      id,
      rootfs: join(home, 'unused'),
      templateRootfs: join(config.templatesHome, 'templates', 'base', 'current', 'rootfs'),
      bundleDir,
      uidBase: 3_999_000_000, // QEMU's own host user (-runas): nobody's
      uidCount: 65_536,
      limits: { cpus: 2, memoryMiB: 512, pids: 1024 },
      agentBinary: config.agentBinary,
      agentRunDir: join(bundleDir, 'run'),
      agentToken: 'unused',
      netns: `/run/netns/${netns}`,
    });
    await driver.start(id); // restored from the saved VM: its identity step connected, then left
  }, 600_000);

  afterAll(async () => {
    await driver?.destroy(id);
    execFileSync('ip', ['netns', 'del', netns]);
    rmSync(home, { recursive: true, force: true });
  });

  it('answers every host that connects right after another one left', async () => {
    // The guest's vCPUs stop while one host leaves and the next connects and sends its AUTH:
    // the port's close, open and the AUTH's bytes then reach the guest at once, as on a
    // loaded host (TCG vCPU threads waiting for a core). Its driver hands the bytes to the
    // agent at once and the close and open in a work item, which may run on the other vCPU
    // while the agent, having read the AUTH, looks at the port.
    let agent = await connectAgent(socket, 'any', { timeoutMs: 30_000 });
    for (let i = 0; i < 30; i++) {
      await driver.freeze!(id);
      agent.close();
      const next = connectAgent(socket, 'any', { timeoutMs: 20_000 });
      await new Promise((r) => setTimeout(r, 200)); // QEMU: the close, the accept, the AUTH queued
      await driver.thaw!(id);
      agent = await next;
      expect(await runIn(agent, ['/bin/echo', `round ${i}`])).toBe(`round ${i}\n`);
    }
    agent.close();
  }, 600_000);

  it('answers an AUTH that comes seconds after the host connected', async () => {
    const s = connect(socket);
    await new Promise((resolve, reject) => s.once('connect', resolve).once('error', reject));
    await new Promise((r) => setTimeout(r, 4000)); // past the 2 s the agent gives a socket
    const decoder = new FrameDecoder();
    const reply = new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer to AUTH')), 30_000);
      s.on('data', (chunk: Buffer) => {
        const first = decoder.push(chunk)[0];
        if (first) resolve(first.type);
        if (first) clearTimeout(timer);
      });
    });
    s.write(new Writer().bytes(Buffer.from('late')).frame(T.AUTH, 0));
    expect(await reply).toBe(R.OK);
    s.destroy();
    // And the next host is answered as ever.
    const agent = await connectAgent(socket, 'any', { timeoutMs: 30_000 });
    expect(await runIn(agent, ['/bin/echo', 'after'])).toBe('after\n');
    agent.close();
  }, 120_000);
});

async function runIn(agent: Awaited<ReturnType<typeof connectAgent>>, argv: string[]): Promise<string> {
  let out = '';
  await new Promise<void>((resolve, reject) => {
    agent
      .spawn(
        { argv, env: {}, cwd: '/', uid: 0, gid: 0 },
        {
          onData: (_s, d) => void (out += d.toString()),
          onExit: () => resolve(),
          onDetach: (err) => reject(err instanceof Error ? err : new Error(String(err))),
        },
      )
      .catch(reject);
  });
  return out;
}
