import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { connectAgent } from './client.ts';
import {
  NOBODY,
  ROOT,
  SH_ENV,
  TOKEN,
  buildAgent,
  skipReason,
  startAgent,
  type RunningAgent,
} from './test-agent.ts';
import type { AgentClient, AgentProcess, SpawnOptions } from './types.ts';

const skip = skipReason();

interface Run {
  proc: AgentProcess;
  out: () => string;
  err: () => string;
  exit: Promise<{ exitCode: number; signal?: string }>;
}

function start(c: AgentClient, argv: string[], extra: Partial<SpawnOptions> = {}): Promise<Run> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let onExit: (r: { exitCode: number; signal?: string }) => void = () => {};
  const exit = new Promise<{ exitCode: number; signal?: string }>((resolve) => (onExit = resolve));
  const opts: SpawnOptions = { argv, env: SH_ENV, cwd: '/', ...ROOT, ...extra };
  return c.spawn(opts, { onData: (s, d) => (s === 'stderr' ? err : out).push(d), onExit }).then((proc) => ({
    proc,
    exit,
    out: () => Buffer.concat(out).toString(),
    err: () => Buffer.concat(err).toString(),
  }));
}

async function sh(c: AgentClient, script: string, extra: Partial<SpawnOptions> = {}) {
  const r = await start(c, ['sh', '-c', script], extra);
  const res = await r.exit;
  return { ...res, out: r.out(), err: r.err() };
}

async function until(fn: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe.skipIf(skip)('cove-agent processes', () => {
  let agent: RunningAgent;
  let c: AgentClient;

  beforeAll(async () => {
    buildAgent();
    agent = startAgent();
    c = await connectAgent(agent.socket, TOKEN, { timeoutMs: 5000 });
  });
  afterAll(async () => {
    c?.close();
    await agent?.stop();
  });

  it('runs a command with env and cwd, separating stdout, stderr and the exit code', async () => {
    const r = await sh(c, 'echo "$FOO"; pwd; echo oops >&2; exit 7', {
      env: { ...SH_ENV, FOO: 'bar' },
      cwd: '/tmp',
    });
    expect(r).toEqual({ exitCode: 7, out: 'bar\n/tmp\n', err: 'oops\n' });
  });

  it('runs as the requested user and groups', async () => {
    const r = await sh(c, 'id -u; id -g; id -G', { ...NOBODY, groups: [65534, 100] });
    expect(r.out).toBe('65534\n65534\n65534 100\n');
  });

  it('reports an exec failure as a spawn error, not an exit', async () => {
    const err: unknown = await start(c, ['/no/such/binary']).catch((e: unknown) => e);
    expect(isCoveError(err, 'not_found')).toBe(true);
    expect((err as Error).message).toMatch(/ENOENT \(exec\)/);
    const cwd: unknown = await start(c, ['true'], { cwd: '/no/such/dir' }).catch((e: unknown) => e);
    expect((cwd as Error).message).toMatch(/ENOENT \(chdir\)/);
  });

  it('gives a pty that can be resized', async () => {
    const out: Buffer[] = [];
    let exited: (v: number) => void = () => {};
    const done = new Promise<number>((r) => (exited = r));
    const p = await c.spawn(
      {
        argv: ['sh', '-c', 'tty; read x; stty size'],
        env: SH_ENV,
        cwd: '/',
        ...ROOT,
        pty: { cols: 80, rows: 24 },
      },
      { onData: (s, d) => (expect(s).toBe('pty'), out.push(d)), onExit: (r) => exited(r.exitCode) },
    );
    expect(p.pty).toBe(true);
    await until(() => Buffer.concat(out).toString().includes('/dev/pts/'));
    await p.resize(132, 43);
    await p.write(Buffer.from('go\n'));
    expect(await done).toBe(0);
    expect(Buffer.concat(out).toString()).toMatch(/\/dev\/pts\/\d+[\s\S]*43 132/);
  });

  it('round-trips stdin through cat', async () => {
    const r = await start(c, ['cat'], { stdin: true });
    const big = Buffer.alloc(300_000, 'abcdefgh');
    await r.proc.write(Buffer.from('hello\n'));
    await r.proc.write(big);
    await r.proc.closeStdin();
    expect((await r.exit).exitCode).toBe(0);
    expect(r.out()).toBe('hello\n' + big.toString());
  });

  it('delivers signals to the process group', async () => {
    const r = await start(c, ['sh', '-c', 'sleep 100; echo not reached']);
    await r.proc.signal('SIGTERM');
    expect(await r.exit).toEqual({ exitCode: 143, signal: 'SIGTERM' });
    const k = await start(c, ['sleep', '100']);
    await k.proc.signal('SIGKILL', { group: false });
    expect(await k.exit).toEqual({ exitCode: 137, signal: 'SIGKILL' });
    await expect(k.proc.signal('SIGKILL')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('delivers 1 MB of output intact and in order', async () => {
    const r = await sh(c, 'i=0; while [ $i -lt 100000 ]; do printf "%09d\\n" $i; i=$((i+1)); done');
    expect(r.exitCode).toBe(0);
    const lines = r.out.split('\n');
    expect(lines.length).toBe(100_001);
    expect(lines.every((l, i) => i === 100_000 || l === String(i).padStart(9, '0'))).toBe(true);
  });

  it('lets a new connection list and attach to a running process', async () => {
    const c1 = await connectAgent(agent.socket, TOKEN);
    const r = await start(c1, ['sh', '-c', 'read line; echo "got $line"'], { stdin: true, tag: 'bg-1' });
    c1.close();
    await c1.closed;
    const c2 = await connectAgent(agent.socket, TOKEN);
    c = c2; // the agent serves one host: c2 replaced whatever was there
    const list = await c2.listProcesses();
    expect(list).toContainEqual({
      pid: r.proc.pid,
      argv: ['sh', '-c', 'read line; echo "got $line"'],
      cwd: '/',
      pty: false,
      tag: 'bg-1',
    });
    const out: Buffer[] = [];
    let exited: (v: number) => void = () => {};
    const done = new Promise<number>((res) => (exited = res));
    const p = await c2.attach(r.proc.pid, {
      onData: (_s, d) => out.push(d),
      onExit: (e) => exited(e.exitCode),
    });
    await p.write(Buffer.from('it\n'));
    expect(await done).toBe(0);
    expect(Buffer.concat(out).toString()).toBe('got it\n');
    await expect(c2.attach(r.proc.pid, { onData() {}, onExit() {} })).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('scrubs its token from /proc/PID/environ', () => {
    const environ = readFileSync(`/proc/${agent.proc.pid}/environ`);
    expect(environ.includes(Buffer.from(TOKEN))).toBe(false);
    expect(environ.includes(Buffer.from('COVE_AGENT_TOKEN'))).toBe(false);
  });

  it('refuses a wrong token', async () => {
    await expect(connectAgent(agent.socket, 'wrong-token', { timeoutMs: 3000 })).rejects.toMatchObject({
      code: 'unauthenticated',
    });
  });

  it('reaps every zombie, orphans included', async () => {
    for (let i = 0; i < 30; i++) expect((await sh(c, 'sleep 0 & sleep 0 & exit 0')).exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    const pid = agent.proc.pid!;
    const zombies = readdirSync('/proc')
      .filter((d) => /^\d+$/.test(d))
      .map((d) => {
        try {
          const st = readFileSync(`/proc/${d}/stat`, 'utf8');
          const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
          return { state: f[0], ppid: Number(f[1]) };
        } catch {
          return undefined;
        }
      })
      .filter((s) => s && s.ppid === pid && s.state === 'Z');
    expect(zombies).toEqual([]);
  });

  it('stays under 1 MiB of private memory when idle, and spawns fast', async () => {
    const times: number[] = [];
    for (let i = 0; i < 100; i++) {
      const t = performance.now();
      await (
        await start(c, ['true'])
      ).exit;
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    const median = times[50]!;
    await new Promise((r) => setTimeout(r, 800)); // the agent trims its buffers after 500 ms idle
    const smaps = readFileSync(`/proc/${agent.proc.pid}/smaps_rollup`, 'utf8');
    const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(smaps)?.[1] ?? NaN);
    const priv = kb('Private_Clean') + kb('Private_Dirty');
    console.log(
      `cove-agent: idle private memory ${priv} KiB (clean ${kb('Private_Clean')}, dirty ${kb('Private_Dirty')}); ` +
        `spawn of true, median of 100: ${median.toFixed(2)} ms`,
    );
    expect(priv).toBeLessThan(1024);
    expect(median).toBeLessThan(50);
  });
});
