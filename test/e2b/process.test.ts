import { setTimeout as sleep } from 'node:timers/promises';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Process,
  Signal,
  type ProcessEvent,
  type StreamInputRequestSchema,
} from '../../src/gen/process/process_pb.js';
import { canRunSandboxes, onMicrovm, startTestCove, stopTestCove } from '../helpers.ts';

type Events = AsyncIterable<{ event?: ProcessEvent }>;

/** envd's process service on the wire, for what the JS SDK does not reach: tags, keepalives,
 * StreamInput, signals other than SIGKILL, deadlines, and adoption after a restart. */
describe.skipIf(!canRunSandboxes)('envd process service on the wire', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let id: string;
  let rpc: Client<typeof Process>;

  function client(url: string, sandboxId: string, user = 'user'): Client<typeof Process> {
    const transport = createConnectTransport({
      baseUrl: url,
      httpVersion: '1.1',
      interceptors: [
        (next) => (req) => {
          req.header.set('E2b-Sandbox-Id', sandboxId);
          req.header.set('E2b-Sandbox-Port', '49983');
          req.header.set('Authorization', `Basic ${Buffer.from(`${user}:`).toString('base64')}`);
          return next(req);
        },
      ],
    });
    return createClient(Process, transport);
  }

  /** Reads a stream to its end: the events in order (output decoded), or the error it ended with. */
  async function collect(
    events: Events,
  ): Promise<{ kinds: string[]; out: string; end?: unknown; error?: ConnectError }> {
    const kinds: string[] = [];
    let out = '';
    let end: unknown;
    try {
      for await (const { event } of events) {
        const e = event?.event;
        kinds.push(e?.case ?? 'empty');
        if (e?.case === 'data') out += Buffer.from(e.value.output.value ?? []).toString();
        if (e?.case === 'end') end = e.value;
      }
      return { kinds, out, end };
    } catch (err) {
      return { kinds, out, end, error: ConnectError.from(err) };
    }
  }

  /** Starts a command and returns its pid and the rest of its stream. */
  async function start(
    c: Client<typeof Process>,
    cmd: string,
    opts: { tag?: string; stdin?: boolean; headers?: Record<string, string>; signal?: AbortSignal } = {},
  ) {
    const stream = c.start(
      {
        process: { cmd: '/bin/bash', args: ['-l', '-c', cmd] },
        ...(opts.tag && { tag: opts.tag }),
        ...(opts.stdin !== undefined && { stdin: opts.stdin }),
      },
      { ...(opts.headers && { headers: opts.headers }), ...(opts.signal && { signal: opts.signal }) },
    );
    const events = stream[Symbol.asyncIterator]();
    const first = await events.next();
    const e = (first.value as { event?: ProcessEvent }).event?.event;
    if (e?.case !== 'start') throw new Error(`expected start, got ${e?.case}`);
    return { pid: e.value.pid, events: { [Symbol.asyncIterator]: () => events } as Events };
  }

  beforeAll(async () => {
    cove = await startTestCove();
    id = (await cove.manager.create({ template: 'base', timeoutMs: 600_000 })).id;
    rpc = client(cove.url, id);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('finds a process by tag; SIGTERM ends it with Go wording; the end is retained', async () => {
    const { pid, events } = await start(rpc, 'sleep 30', { tag: 'svc' });
    const listed = (await rpc.list({})).processes.find((p) => p.pid === pid);
    expect(listed).toMatchObject({
      tag: 'svc',
      config: { cmd: '/bin/bash', args: ['-l', '-c', 'sleep 30'] },
    });

    const following = collect(rpc.connect({ process: { selector: { case: 'tag', value: 'svc' } } }));
    await rpc.sendSignal({ process: { selector: { case: 'tag', value: 'svc' } }, signal: Signal.SIGTERM });
    const end = { exitCode: -1, exited: false, status: 'signal: terminated', error: 'signal: terminated' };
    expect(await collect(events)).toMatchObject({ kinds: ['end'], end });
    expect(await following).toMatchObject({ kinds: ['start', 'end'], end });

    const late = await collect(rpc.connect({ process: { selector: { case: 'tag', value: 'svc' } } }));
    expect(late).toMatchObject({ kinds: ['start', 'end'], end });
    expect((await rpc.list({})).processes.map((p) => p.pid)).not.toContain(pid);
  });

  it('sends keepalives at the requested interval while a process is quiet', async () => {
    const { events } = await start(rpc, 'sleep 2.5; echo done', {
      headers: { 'Keepalive-Ping-Interval': '1' },
    });
    const r = await collect(events);
    // One a second until the output: two at least, a third when the login shell took its half
    // second to start (microVMs under software emulation, at load).
    const keepalives = r.kinds.indexOf('data');
    expect(keepalives).toBeGreaterThanOrEqual(2);
    expect(r.kinds).toEqual([...Array<string>(keepalives).fill('keepalive'), 'data', 'end']);
    expect(r.end).toMatchObject({ exitCode: 0, exited: true, status: 'exit status 0' });
  });

  it('answers other signals with unimplemented and unknown pids with not_found', async () => {
    const { pid, events } = await start(rpc, 'sleep 30');
    await expect(
      rpc.sendSignal({ process: { selector: { case: 'pid', value: pid } } }),
    ).rejects.toMatchObject({
      code: Code.Unimplemented,
    });
    for (const call of [
      () =>
        rpc.sendSignal({ process: { selector: { case: 'pid', value: 999_999 } }, signal: Signal.SIGKILL }),
      () => rpc.sendInput({ process: { selector: { case: 'pid', value: 999_999 } } }),
      () => rpc.closeStdin({ process: { selector: { case: 'tag', value: 'nope' } } }),
      () => rpc.update({ process: { selector: { case: 'pid', value: 999_999 } } }),
    ])
      await expect(call()).rejects.toMatchObject({ code: Code.NotFound });
    await expect(
      rpc.update({
        process: { selector: { case: 'pid', value: pid } },
        pty: { size: { cols: 80, rows: 24 } },
      }),
    ).rejects.toMatchObject({
      code: Code.InvalidArgument,
    });
    await rpc.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL });
    expect((await collect(events)).end).toMatchObject({ exitCode: -1, status: 'signal: killed' });
  });

  it('takes stdin as a client stream over HTTP/1.1, and pipes stdin when the field is absent', async () => {
    const { pid, events } = await start(rpc, 'cat; echo "<eof>"');
    const selector = { case: 'pid' as const, value: pid };
    const stdin = (text: string) => ({
      input: { input: { case: 'stdin' as const, value: Buffer.from(text) } },
    });
    const messages: MessageInitShape<typeof StreamInputRequestSchema>[] = [
      { event: { case: 'start', value: { process: { selector } } } },
      { event: { case: 'data', value: stdin('a') } },
      { event: { case: 'keepalive', value: {} } },
      { event: { case: 'data', value: stdin('b') } },
    ];
    async function* input() {
      for (const m of messages) {
        yield m;
        await sleep(20); // the body arrives over time, as a client streams it
      }
    }
    await rpc.streamInput(input());
    await rpc.closeStdin({ process: { selector: { case: 'pid', value: pid } } });
    expect(await collect(events)).toMatchObject({ out: 'ab<eof>\n', end: { exitCode: 0 } });
  });

  // On microVMs under software emulation (npm run test:microvm) the guest and its port move output
  // far slower than the bound takes to fill in this wait: the stream is never dropped there. The
  // producer writes 1 MiB at a time: on gVisor every syscall is costly, and `head -c`'s 8 KiB
  // writes (and the agent's reads of as little) moved ~10 MB/s to a reading client, which under
  // a busier host fell short of the 16 MiB bound (src/manager/processes.ts) in the wait; dd's
  // 1 MiB writes move ~40 MB/s there (measured 2026-11-26 at load 15 on 2 cores; crun ~45 MB/s).
  it.skipIf(onMicrovm)(
    'drops a stream whose client stops reading, not the process, and bounds what waits',
    async () => {
      const total = 200 * 1024 * 1024;
      const { pid, events } = await start(rpc, 'dd if=/dev/zero bs=1M count=200 2>/dev/null; sleep 30');
      // Not reading: the socket fills, then the subscriber's queue.
      await sleep(6000);
      const r = await collect(events);
      expect(r.error?.code).toBe(Code.ResourceExhausted);
      // Dropped before the end. How much came first depends on the runtime's pipe speed against
      // the reader's (on gVisor up to ~120 MB, while the reader caught up and fell behind again).
      expect(r.out.length).toBeLessThan(total);
      expect((await rpc.list({})).processes.map((p) => p.pid)).toContain(pid);
      await rpc.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL });
    },
  );

  it('ends a Connect at its deadline and leaves the process running', async () => {
    const { pid, events } = await start(rpc, 'sleep 30');
    const r = await collect(
      rpc.connect({ process: { selector: { case: 'pid', value: pid } } }, { timeoutMs: 500 }),
    );
    expect(r.kinds).toEqual(['start']);
    expect(r.error?.code).toBe(Code.DeadlineExceeded);
    expect((await rpc.list({})).processes.map((p) => p.pid)).toContain(pid);
    await rpc.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL });
    await collect(events);
  });

  it("a PTY refuses CloseStdin with envd's hint", async () => {
    const events = rpc.start({
      process: { cmd: '/bin/bash', args: ['-i', '-l'] },
      pty: { size: { cols: 80, rows: 24 } },
    });
    const it = events[Symbol.asyncIterator]();
    const first = (await it.next()).value as { event?: ProcessEvent };
    const pid = first.event?.event.case === 'start' ? first.event.event.value.pid : 0;
    const err = await rpc
      .closeStdin({ process: { selector: { case: 'pid', value: pid } } })
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: Code.InvalidArgument });
    expect((err as Error).message).toContain('send Ctrl+D (0x04)');
    await rpc.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL });
    await it.return?.();
  });

  it('adopts running processes after a restart; what was lost is the output meanwhile', async () => {
    const abort = new AbortController();
    const { pid } = await start(rpc, 'while sleep 0.2; do echo tick; done', {
      tag: 'ticker',
      signal: abort.signal,
    });
    abort.abort(); // the client goes away: the process stays
    await cove.close();
    cove = await startTestCove(cove.config);
    rpc = client(cove.url, id);

    const listed = (await rpc.list({})).processes.find((p) => p.pid === pid);
    expect(listed).toMatchObject({
      tag: 'ticker',
      config: {
        cmd: '/bin/bash',
        args: ['-l', '-c', 'while sleep 0.2; do echo tick; done'],
        envs: {},
        cwd: '/home/user',
      },
    });
    const following = rpc.connect({ process: { selector: { case: 'tag', value: 'ticker' } } });
    const it = following[Symbol.asyncIterator]();
    expect(((await it.next()).value as { event?: ProcessEvent }).event?.event.case).toBe('start');
    expect(((await it.next()).value as { event?: ProcessEvent }).event?.event).toMatchObject({
      case: 'data',
    });
    await rpc.sendSignal({ process: { selector: { case: 'pid', value: pid } }, signal: Signal.SIGKILL });
    const rest = await collect({ [Symbol.asyncIterator]: () => it } as Events);
    expect(rest.end).toMatchObject({ exitCode: -1, status: 'signal: killed' });
  });
});
