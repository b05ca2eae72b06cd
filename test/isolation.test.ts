import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync, rmSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import type { SandboxInfo } from '../src/manager/manager.ts';
import { canRunSandboxes, sh, startTestCove, stopTestCove } from './helpers.ts';

/**
 * A test host standing in for a cloud metadata service: a network namespace that owns
 * 169.254.169.254, routed from the host. If the firewall under test were broken, the
 * sandbox's packets would end here, on this machine, and the test would see the answer.
 */
async function startMetadataHost(): Promise<() => void> {
  const ns = 'cvt-metadata'; // not <instance>-*: reconcile would take it for a sandbox's
  const ip = (args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  try {
    ip(['netns', 'del', ns]);
  } catch {
    // not there
  }
  try {
    ip(['link', 'del', 'cvtmeta0']);
  } catch {
    // not there
  }
  ip(['netns', 'add', ns]);
  ip(['link', 'add', 'cvtmeta0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
  ip(['addr', 'add', '169.254.169.253/30', 'dev', 'cvtmeta0']);
  ip(['link', 'set', 'cvtmeta0', 'up']);
  ip(['-n', ns, 'addr', 'add', '169.254.169.254/30', 'dev', 'eth0']);
  ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
  ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  ip(['-n', ns, 'route', 'add', 'default', 'via', '169.254.169.253']);
  const server = spawn(
    'ip',
    ['netns', 'exec', ns, '/usr/bin/python3', '-m', 'http.server', '80', '--bind', '169.254.169.254'],
    {
      stdio: 'ignore',
    },
  );
  // python takes a second or more to listen on a busy machine: wait for it, bounded.
  for (let i = 0; i < 100; i++) {
    const up = await fetch('http://169.254.169.254/', { signal: AbortSignal.timeout(500) }).then(
      (r) => r.ok,
      () => false,
    );
    if (up) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return () => {
    server.kill();
    ip(['link', 'del', 'cvtmeta0']);
    ip(['netns', 'del', ns]);
  };
}

describe.skipIf(!canRunSandboxes)('a sandbox is isolated from the host and from other sandboxes', () => {
  let cove: Cove & { config: Config };
  let a: SandboxInfo;
  let b: SandboxInfo;
  let stopMetadata: () => void = () => undefined;
  let hostOnly: Server;

  beforeAll(async () => {
    cove = await startTestCove();
    [a, b] = await Promise.all([
      cove.manager.create({ template: 'base', timeoutMs: 600_000 }),
      cove.manager.create({ template: 'base', timeoutMs: 600_000 }),
    ]);
    stopMetadata = await startMetadataHost();
    // A service that listens on the host's bridge address: reachable from the host only.
    hostOnly = createServer((s) => s.end('host-secret\n'));
    await new Promise<void>((r) => hostOnly.listen(18080, `${cove.config.subnet16}.0.1`, r));
  });

  afterAll(async () => {
    hostOnly?.close();
    stopMetadata();
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('sees only its own processes, with the agent as PID 1 and the sandbox id as hostname', async () => {
    const r = await sh(cove.manager, a.id, 'ps -e -o pid=,comm= | sort -n | head -3; hostname', {
      user: 'root',
    });
    expect(r.stdout.split('\n')[0]?.trim()).toMatch(/^1 /);
    expect(r.stdout).toContain(a.id);
    const count = await sh(cove.manager, a.id, 'ls -d /proc/[0-9]* | wc -l');
    expect(Number(count.stdout)).toBeLessThan(10);
  });

  it("keeps the agent's socket and token from the sandbox's user", async () => {
    const r = await sh(
      cove.manager,
      a.id,
      'ls /.cove/run 2>&1; echo rc=$?; tr "\\0" "\\n" < /proc/1/environ 2>&1 | grep -c TOKEN',
    );
    expect(r.stdout).toMatch(/Permission denied[\s\S]*rc=2/);
    const root = await sh(cove.manager, a.id, 'tr "\\0" "\\n" < /proc/1/environ | grep -c COVE_AGENT_TOKEN', {
      user: 'root',
    });
    expect(root.stdout.trim()).toBe('0');
  });

  it('cannot read host files', async () => {
    const secret = `/tmp/cove-host-secret-${process.pid}`;
    writeFileSync(secret, 'secret');
    try {
      const r = await sh(cove.manager, a.id, `cat ${secret}`, { user: 'root' });
      expect(r.exitCode).not.toBe(0);
      expect(r.stdout).not.toContain('secret');
    } finally {
      rmSync(secret);
    }
  });

  it('is root only inside: host uids are its own range, and kernel surfaces are closed', async () => {
    const pid = Number(readFileSync(`${cove.config.home}/sandboxes/${a.id}/pid`, 'utf8'));
    const uid = /Uid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    expect(Number(uid)).toBeGreaterThanOrEqual(1_000_000);
    const r = await sh(
      cove.manager,
      a.id,
      'mount -t tmpfs none /mnt 2>&1; echo m=$?; unshare -U true 2>&1; echo u=$?; cat /proc/kcore 2>/dev/null | wc -c; echo 1 > /proc/sys/kernel/panic 2>&1; echo p=$?',
      { user: 'root' },
    );
    expect(r.stdout).toMatch(/m=[1-9]/);
    expect(r.stdout).toMatch(/u=[1-9]/);
    expect(r.stdout).toMatch(/^0$/m); // /proc/kcore reads nothing
    expect(r.stdout).toMatch(/p=[1-9]/);
  });

  it('reaches the host only through replies: no other sandbox, no host service, no metadata', async () => {
    await sh(
      cove.manager,
      b.id,
      'nohup python3 -m http.server 8000 --bind 0.0.0.0 >/dev/null 2>&1 & sleep 1',
    );
    // The host reaches sandbox B (the port proxy relies on it) and the metadata test host answers.
    expect(
      execFileSync('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        `http://${b.address}:8000/`,
      ]).toString(),
    ).toBe('200');
    expect(
      execFileSync('curl', [
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        'http://169.254.169.254/',
      ]).toString(),
    ).toBe('200');
    const probe = (url: string) =>
      sh(cove.manager, a.id, `curl -s -m 2 -o /dev/null -w '%{http_code}' ${url}; echo " rc=$?"`);
    expect((await probe(`http://${b.address}:8000/`)).stdout).toMatch(/rc=(7|28)/);
    expect((await probe(`http://${cove.config.subnet16}.0.1:18080/`)).stdout).toMatch(/rc=(7|28|52|56)/);
    expect((await probe('http://169.254.169.254/')).stdout).toMatch(/rc=(7|28)/);
    // ping uses ICMP sockets (no NET_RAW) and works toward the gateway's L2 neighbour: itself
    expect((await sh(cove.manager, a.id, `ping -c1 -W1 ${a.address} >/dev/null; echo $?`)).stdout).toBe(
      '0\n',
    );
  });

  it('holds its memory limit: a hog is killed, the sandbox lives on', async () => {
    const r = await sh(cove.manager, a.id, "python3 -c 'x = bytearray(2 << 30)'");
    expect(r.exitCode).not.toBe(0);
    expect((await sh(cove.manager, a.id, 'echo alive')).stdout).toBe('alive\n');
  });

  it('holds its pids limit against a fork bomb, and kill cleans it up', async () => {
    const bomb = await cove.manager.create({ template: 'base', timeoutMs: 60_000 });
    await sh(cove.manager, bomb.id, 'bomb() { bomb | bomb & }; (bomb) >/dev/null 2>&1 & sleep 3; echo done');
    const pids = readFileSync(`/sys/fs/cgroup/pids/${cove.config.instance}/${bomb.id}/pids.current`, 'utf8');
    expect(Number(pids)).toBeLessThanOrEqual(bomb.limits.pids);
    // the host still forks normally
    expect(execFileSync('sh', ['-c', 'echo host-ok']).toString()).toBe('host-ok\n');
    await cove.manager.kill(bomb.id);
  });
});
