import { describe, expect, it, vi } from 'vitest';
import type { AgentClient, AgentProcess, ProcessEntry, ProcessHandlers } from '../agent-channel/client.ts';
import { CoveError, isCoveError } from '../core/errors.ts';
import { createLogger } from '../core/log.ts';
import { createProcessRegistry, type ProcessEvent, type Subscription } from './processes.ts';

const log = createLogger('silent');

/** A process the test drives: it emits what the test says, and records what it was asked. */
function fakeProcess(pid: number, opts: { pty?: boolean } = {}) {
  let handlers: ProcessHandlers | undefined;
  const calls: string[] = [];
  const proc: AgentProcess = {
    pid,
    pty: opts.pty ?? false,
    write: (data) => (calls.push(`write ${data.toString()}`), Promise.resolve()),
    closeStdin: () => (calls.push('closeStdin'), Promise.resolve()),
    signal: (sig, o) => {
      calls.push(`signal ${sig} group=${o?.group !== false}`);
      if (sig === 'SIGKILL') setImmediate(() => handlers?.onExit({ exitCode: 137, signal: 'SIGKILL' }));
      return Promise.resolve();
    },
    resize: (c, r) => (calls.push(`resize ${c}x${r}`), Promise.resolve()),
  };
  return {
    proc,
    calls,
    spawn: (h: ProcessHandlers) => ((handlers = h), Promise.resolve(proc)),
    bind: (h: ProcessHandlers) => (handlers = h),
    out: (text: string, stream: 'stdout' | 'stderr' | 'pty' = 'stdout') =>
      handlers?.onData(stream, Buffer.from(text)),
    exit: (exitCode: number) => handlers?.onExit({ exitCode }),
    detach: () => handlers?.onDetach?.(new CoveError('unavailable', 'agent connection closed')),
  };
}

function registry(agent: Partial<AgentClient> = {}, opts = {}) {
  return createProcessRegistry({ agent: () => agent as AgentClient, log, ...opts });
}

const config = { cmd: '/bin/bash', args: ['-l', '-c', 'x'], envs: {} };

async function drain(sub: Subscription): Promise<ProcessEvent[]> {
  const out: ProcessEvent[] = [];
  for (let e = await sub.next(); e; e = await sub.next()) out.push(e);
  return out;
}

describe('the process registry', () => {
  it('fans output out to every subscriber from when it subscribed, then the exit', async () => {
    const r = registry();
    const f = fakeProcess(10);
    const { process, events } = await r.start({ config, pty: false, stdin: false }, f.spawn);
    f.out('a');
    const late = process.subscribe();
    f.out('b');
    f.exit(3);
    expect(await drain(events)).toEqual([
      { type: 'data', stream: 'stdout', data: Buffer.from('ab') }, // coalesced while queued
      { type: 'exit', exit: { exitCode: 3 } },
    ]);
    expect(await drain(late)).toEqual([
      { type: 'data', stream: 'stdout', data: Buffer.from('b') },
      { type: 'exit', exit: { exitCode: 3 } },
    ]);
  });

  it('keeps output that arrives together with STARTED', async () => {
    const r = registry();
    const f = fakeProcess(11);
    const { events } = await r.start({ config, pty: false, stdin: false }, (h) => {
      const started = f.spawn(h);
      f.out('early');
      f.exit(0);
      return started;
    });
    expect(await drain(events)).toHaveLength(2);
    expect((await r.find({ pid: 11 })).exit).toEqual({ exitCode: 0 });
    expect(await r.list()).toEqual([]);
  });

  it('lists live processes and finds them by pid or tag; unknown ones are not_found', async () => {
    const r = registry();
    const f = fakeProcess(12);
    await r.start({ config, tag: 'web', pty: false, stdin: true }, f.spawn);
    expect((await r.list()).map((p) => [p.pid, p.tag, p.config])).toEqual([[12, 'web', config]]);
    expect((await r.live({ tag: 'web' })).pid).toBe(12);
    await expect(r.live({ pid: 99 })).rejects.toSatisfy((e) => isCoveError(e, 'not_found'));
    await expect(r.find({ tag: 'nope' })).rejects.toThrow('process with tag nope not found');
  });

  it('retains an exit for a late Connect, bounded in time and count', async () => {
    vi.useFakeTimers();
    try {
      const r = registry({}, { retentionMs: 1000, maxRetained: 2 });
      for (const pid of [1, 2, 3]) {
        const f = fakeProcess(pid);
        await r.start({ config, pty: false, stdin: false }, f.spawn);
        f.exit(pid);
      }
      await expect(r.find({ pid: 1 })).rejects.toSatisfy((e) => isCoveError(e, 'not_found')); // oldest dropped
      expect(await drain((await r.find({ pid: 3 })).subscribe())).toEqual([
        { type: 'exit', exit: { exitCode: 3 } },
      ]);
      await expect(r.live({ pid: 3 })).rejects.toSatisfy((e) => isCoveError(e, 'not_found'));
      vi.advanceTimersByTime(1001);
      await expect(r.find({ pid: 3 })).rejects.toSatisfy((e) => isCoveError(e, 'not_found'));
    } finally {
      vi.useRealTimers();
    }
  });

  it('a new process with a retained pid or tag replaces the old exit', async () => {
    const r = registry();
    const a = fakeProcess(5);
    await r.start({ config, tag: 't', pty: false, stdin: false }, a.spawn);
    a.exit(1);
    const b = fakeProcess(6);
    await r.start({ config, tag: 't', pty: false, stdin: false }, b.spawn);
    expect((await r.find({ tag: 't' })).pid).toBe(6);
    b.exit(0);
    const c = fakeProcess(6);
    await r.start({ config, pty: false, stdin: false }, c.spawn);
    expect((await r.find({ pid: 6 })).exit).toBeUndefined();
  });

  it('drops a subscriber that falls too far behind, and only that one', async () => {
    const r = registry({}, { maxQueuedBytes: 100 });
    const f = fakeProcess(7);
    const { process, events: slow } = await r.start({ config, pty: false, stdin: false }, f.spawn);
    const fast = process.subscribe();
    const got: string[] = [];
    const reading = (async () => {
      for (let e = await fast.next(); e; e = await fast.next())
        if (e.type === 'data') got.push(e.data.toString());
    })();
    for (let i = 0; i < 30; i++) {
      f.out('0123456789');
      await Promise.resolve();
    }
    f.exit(0);
    await reading;
    expect(got.join('')).toHaveLength(300);
    await expect(slow.next()).rejects.toSatisfy((e) => isCoveError(e, 'resource_exhausted'));
  });

  it('checks stdin, pty and resize against how the process was started', async () => {
    const r = registry();
    const pipe = fakeProcess(20);
    const p = (await r.start({ config, pty: false, stdin: true }, pipe.spawn)).process;
    await p.writeStdin(Buffer.from('hi'));
    await p.writeStdin(Buffer.alloc(0)); // nothing to send: no round trip
    await expect(p.writePty(Buffer.from('x'))).rejects.toSatisfy((e) => isCoveError(e, 'invalid_argument'));
    await expect(p.resize(80, 24)).rejects.toThrow('tty not assigned');
    await p.closeStdin();
    await p.closeStdin(); // already closed: a no-op, as envd
    await expect(p.writeStdin(Buffer.from('late'))).rejects.toThrow('not enabled or closed');
    expect(pipe.calls).toEqual(['write hi', 'closeStdin']);

    const tty = fakeProcess(21, { pty: true });
    const t = (await r.start({ config, pty: true, stdin: true }, tty.spawn)).process;
    await t.writePty(Buffer.from('ls\n'));
    await t.resize(100, 30);
    await expect(t.writeStdin(Buffer.from('x'))).rejects.toThrow('tty assigned to process');
    await expect(t.closeStdin()).rejects.toThrow('send Ctrl+D (0x04)');
    expect(tty.calls).toEqual(['write ls\n', 'resize 100x30']);

    const none = fakeProcess(22);
    const n = (await r.start({ config, pty: false, stdin: false }, none.spawn)).process;
    await expect(n.writeStdin(Buffer.from('x'))).rejects.toThrow('not enabled or closed');
  });

  it('SIGKILL goes to the group and waits for the exit; SIGTERM to the process only', async () => {
    const r = registry();
    const f = fakeProcess(30);
    const { process, events } = await r.start({ config, pty: false, stdin: false }, f.spawn);
    await process.signal('SIGTERM');
    await process.signal('SIGKILL');
    expect(process.exit).toEqual({ exitCode: 137, signal: 'SIGKILL' });
    expect(f.calls).toEqual(['signal SIGTERM group=false', 'signal SIGKILL group=true']);
    expect(await drain(events)).toEqual([{ type: 'exit', exit: { exitCode: 137, signal: 'SIGKILL' } }]);
    await expect(process.signal('SIGKILL')).rejects.toSatisfy((e) => isCoveError(e, 'not_found'));
  });

  it('kills a process when its lifetime ends', async () => {
    const r = registry();
    const f = fakeProcess(31);
    const { events } = await r.start({ config, pty: false, stdin: false, timeoutMs: 20 }, f.spawn);
    expect(await drain(events)).toEqual([{ type: 'exit', exit: { exitCode: 137, signal: 'SIGKILL' } }]);
    expect(f.calls).toEqual(['signal SIGKILL group=true']);
  });

  it('a failed spawn leaves nothing behind', async () => {
    const r = registry();
    await expect(
      r.start({ config, pty: false, stdin: false }, () => Promise.reject(new CoveError('not_found', 'x'))),
    ).rejects.toThrow('x');
    expect(await r.list()).toEqual([]);
  });

  it('adopts what the agent runs after a restart, and re-attaches after a lost connection', async () => {
    const procs = new Map([40, 41].map((pid) => [pid, fakeProcess(pid, { pty: pid === 41 })]));
    const listing: ProcessEntry[] = [
      { pid: 40, argv: ['/bin/bash', '-l', '-c', 'sleep 100'], cwd: '/home/user', pty: false, tag: 'svc' },
      { pid: 41, argv: ['/bin/bash', '-i', '-l'], cwd: '/root', pty: true },
      { pid: 42, argv: ['gone'], cwd: '/', pty: false },
    ];
    const attached: number[] = [];
    const agent: Partial<AgentClient> = {
      listProcesses: () => Promise.resolve(listing),
      attach: (pid, h) => {
        attached.push(pid);
        const f = procs.get(pid);
        if (!f) return Promise.reject(new CoveError('not_found', 'attach: ESRCH'));
        f.bind(h);
        return Promise.resolve(f.proc);
      },
    };
    const r = registry(agent);
    void r.adopt();
    const list = await r.list(); // waits for the adoption
    expect(list.map((p) => [p.pid, p.tag, p.config, p.pty])).toEqual([
      [40, 'svc', { cmd: '/bin/bash', args: ['-l', '-c', 'sleep 100'], envs: {}, cwd: '/home/user' }, false],
      [41, undefined, { cmd: '/bin/bash', args: ['-i', '-l'], envs: {}, cwd: '/root' }, true],
    ]);

    const sub = (await r.live({ pid: 40 })).subscribe();
    for (const f of procs.values()) f.detach(); // the connection dropped: every stream ends
    await expect(sub.next()).rejects.toSatisfy((e) => isCoveError(e, 'unavailable'));
    listing.splice(1); // 41 ended while nobody was attached
    await r.adopt();
    expect((await r.list()).map((p) => p.pid)).toEqual([40]);
    expect(attached).toEqual([40, 41, 42, 40]);
    const again = (await r.live({ pid: 40 })).subscribe();
    procs.get(40)!.out('back');
    expect(await again.next()).toEqual({ type: 'data', stream: 'stdout', data: Buffer.from('back') });
  });

  it('close ends every subscriber and forgets everything', async () => {
    const r = registry();
    const f = fakeProcess(50);
    const { events } = await r.start({ config, pty: false, stdin: false }, f.spawn);
    const pending = events.next();
    r.close();
    await expect(pending).rejects.toSatisfy((e) => isCoveError(e, 'unavailable'));
    await expect(r.list()).rejects.toSatisfy((e) => isCoveError(e, 'unavailable'));
  });
});
