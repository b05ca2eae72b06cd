import { createServer, type Server } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { AgentProcess, ProcessHandlers } from '../agent-channel/client.ts';
import { isCoveError } from '../core/errors.ts';
import { lastLines, portOpen, runTemplateStart } from './startup.ts';

const servers: Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function listen(port = 0): Promise<number> {
  const server = createServer((socket) => socket.end());
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(port, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

/** A port that nothing listens on: one the OS handed out and took back. */
async function freePort(): Promise<number> {
  const port = await listen();
  servers.pop()?.close();
  return port;
}

const fakeProcess = { pid: 42 } as AgentProcess;

describe('runTemplateStart', () => {
  it('runs the command through sh with its output appended to the log, $0 being the log', async () => {
    const argvs: string[][] = [];
    await runTemplateStart({
      start: { command: 'exec my-server --port 1', log: '/tmp/my.log', readyTimeoutMs: 1000 },
      address: '127.0.0.1',
      spawn: (argv) => {
        argvs.push(argv);
        return Promise.resolve(fakeProcess);
      },
      readLog: () => Promise.resolve(''),
    });
    expect(argvs).toEqual([
      ['/bin/sh', '-c', 'exec >>"$0" 2>&1 </dev/null\nexec my-server --port 1', '/tmp/my.log'],
    ]);
  });

  it('resolves once the ready port accepts a connection', async () => {
    const port = await freePort();
    const started = Date.now();
    setTimeout(() => void listen(port), 150);
    await runTemplateStart({
      start: { command: 'x', log: '/l', readyPort: port, readyTimeoutMs: 5000 },
      address: '127.0.0.1',
      spawn: () => Promise.resolve(fakeProcess),
      readLog: () => Promise.resolve(''),
      probeEveryMs: 10,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('fails with the end of the log when the command exits before the port opens', async () => {
    const port = await freePort();
    let handlers: ProcessHandlers | undefined;
    const err = await runTemplateStart({
      start: { command: 'x', log: '/tmp/s.log', readyPort: port, readyTimeoutMs: 5000 },
      address: '127.0.0.1',
      spawn: (_argv, h) => {
        handlers = h;
        setTimeout(() => h.onExit({ exitCode: 3 }), 30);
        return Promise.resolve(fakeProcess);
      },
      readLog: () => Promise.resolve('Traceback...\nImportError: no module'),
      probeEveryMs: 10,
    }).catch((e: unknown) => e);
    expect(handlers).toBeDefined();
    expect(isCoveError(err, 'unavailable')).toBe(true);
    expect((err as Error).message).toMatch(/exited \(status 3\) before port \d+ opened/);
    expect((err as Error).message).toContain('/tmp/s.log:\nTraceback...\nImportError: no module');
  });

  it('fails when the port stays closed for readyTimeoutMs', async () => {
    const port = await freePort();
    const err = await runTemplateStart({
      start: { command: 'x', log: '/l', readyPort: port, readyTimeoutMs: 200 },
      address: '127.0.0.1',
      spawn: () => Promise.resolve(fakeProcess),
      readLog: () => Promise.reject(new Error('no log')),
      probeEveryMs: 10,
    }).catch((e: unknown) => e);
    expect(isCoveError(err, 'unavailable')).toBe(true);
    expect((err as Error).message).toMatch(/did not open port \d+ within 200 ms$/);
  });
});

describe('portOpen', () => {
  it('tells an open port from a closed one', async () => {
    expect(await portOpen('127.0.0.1', await listen(), 1000)).toBe(true);
    expect(await portOpen('127.0.0.1', await freePort(), 1000)).toBe(false);
  });
});

describe('lastLines', () => {
  it('keeps the last lines, without the trailing newline', () => {
    expect(lastLines('a\nb\nc\n', 2)).toBe('b\nc');
    expect(lastLines('', 2)).toBe('');
  });
});

describe('runTemplateStart with a ready command (E2B readyCmd)', () => {
  /** A spawn whose ready command (argv[2] === 'ready') exits with the codes given, in turn. */
  const spawner = (codes: number[], startExit?: number) => {
    const calls: string[][] = [];
    const spawn = (argv: string[], h: ProcessHandlers) => {
      calls.push(argv);
      if (argv[2] === 'ready') setTimeout(() => h.onExit({ exitCode: codes.shift() ?? 1 }), 1);
      else if (startExit !== undefined) setTimeout(() => h.onExit({ exitCode: startExit }), 1);
      return Promise.resolve(fakeProcess);
    };
    return { spawn, calls };
  };
  const start = { command: 'serve', log: '/tmp/s.log', readyCmd: 'ready', readyTimeoutMs: 400 };

  it('resolves once the ready command exits 0', async () => {
    const s = spawner([1, 1, 0]);
    await runTemplateStart({
      start,
      address: '127.0.0.1',
      spawn: s.spawn,
      readLog: () => Promise.resolve(''),
    });
    expect(s.calls.filter((a) => a[2] === 'ready')).toHaveLength(3);
  });

  it('fails with the log when the start command exits first, and at the deadline', async () => {
    const exited = await runTemplateStart({
      start,
      address: '127.0.0.1',
      probeEveryMs: 20,
      spawn: spawner([], 7).spawn,
      readLog: () => Promise.resolve('boom'),
    }).catch((e: unknown) => e);
    expect(isCoveError(exited, 'unavailable')).toBe(true);
    expect((exited as Error).message).toMatch(
      /exited \(status 7\) before the ready command succeeded[\s\S]*boom/,
    );
    const late = await runTemplateStart({
      start,
      address: '127.0.0.1',
      spawn: spawner([]).spawn,
      readLog: () => Promise.resolve(''),
    }).catch((e: unknown) => e);
    expect((late as Error).message).toMatch(
      /was not ready within 400 ms \(the ready command `ready` last exited 1\)/,
    );
  });
});
