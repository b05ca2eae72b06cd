/** From the registry's events to envd's ProcessEvent stream: keepalives, deadlines, Go's wording. */
import type { MessageInitShape } from '@bufbuild/protobuf';
import { ConnectError, type HandlerContext } from '@connectrpc/connect';
import type { ProcessEventSchema } from '../../gen/process/process_pb.js';
import type { ProcessEvent, ProcessExit, Subscription } from '../../manager/processes.ts';

export type ProcessEventInit = MessageInitShape<typeof ProcessEventSchema>;
type EndEventInit = { exitCode: number; exited: boolean; status: string; error?: string };

/** Go's `syscall.Signal.String()` on Linux: what envd prints after "signal: ". */
const GO_SIGNAL_NAMES: Record<number, string> = {
  1: 'hangup',
  2: 'interrupt',
  3: 'quit',
  4: 'illegal instruction',
  5: 'trace/breakpoint trap',
  6: 'aborted',
  7: 'bus error',
  8: 'floating point exception',
  9: 'killed',
  10: 'user defined signal 1',
  11: 'segmentation fault',
  12: 'user defined signal 2',
  13: 'broken pipe',
  14: 'alarm clock',
  15: 'terminated',
  16: 'stack fault',
  17: 'child exited',
  18: 'continued',
  19: 'stopped (signal)',
  20: 'stopped',
  21: 'stopped (tty input)',
  22: 'stopped (tty output)',
  23: 'urgent I/O condition',
  24: 'CPU time limit exceeded',
  25: 'file size limit exceeded',
  26: 'virtual timer expired',
  27: 'profiling timer expired',
  28: 'window changed',
  29: 'I/O possible',
  30: 'power failure',
  31: 'bad system call',
};

/**
 * envd's EndEvent comes from Go's `cmd.Wait()`: a normal exit is `exit status N` (and the
 * error, when N ≠ 0, says the same); a signal gives exit code -1, `exited: false` and
 * `signal: killed` (ProcessState.String()). The SDK turns a non-zero code into
 * CommandExitError with `error` as its message.
 */
export function endEvent(exit: ProcessExit): EndEventInit {
  if (exit.signal !== undefined) {
    const signo = exit.exitCode - 128;
    const text = `signal: ${GO_SIGNAL_NAMES[signo] ?? `signal ${signo}`}`;
    return { exitCode: -1, exited: false, status: text, error: text };
  }
  const status = `exit status ${exit.exitCode}`;
  return { exitCode: exit.exitCode, exited: true, status, ...(exit.exitCode !== 0 && { error: status }) };
}

function toWire(e: ProcessEvent): ProcessEventInit {
  if (e.type === 'exit') return { event: { case: 'end', value: endEvent(e.exit) } };
  return { event: { case: 'data', value: { output: { case: e.stream, value: e.data } } } };
}

export function startEvent(pid: number): ProcessEventInit {
  return { event: { case: 'start', value: { pid } } };
}

const KEEPALIVE: ProcessEventInit = { event: { case: 'keepalive', value: {} } };

/** `Keepalive-Ping-Interval` in seconds (the SDK sends 50); envd's default is 90. At least 1 s,
 * so a client cannot make the stream spin (Go's ticker would panic on 0). */
export function keepaliveMs(header: string | null): number {
  const s = header !== null && /^\d{1,6}$/.test(header.trim()) ? Number(header) : 90;
  return Math.max(s, 1) * 1000;
}

/**
 * Follows a subscription until the process's exit, sending a keepalive whenever nothing else
 * was sent for the interval. The call's deadline (`Connect-Timeout-Ms`) ends the stream with
 * deadline_exceeded; a client that goes away just ends it. Either way only the subscription
 * ends: the process keeps running. connect-node awaits each write's drain before pulling the
 * next event, so a slow client is bounded by the subscription's queue, not by this loop.
 */
export async function* follow(sub: Subscription, ctx: HandlerContext): AsyncGenerator<ProcessEventInit> {
  const interval = keepaliveMs(ctx.requestHeader.get('keepalive-ping-interval'));
  const ABORTED = Symbol('aborted');
  const KEEPALIVE_DUE = Symbol('keepalive');
  let onAbort: () => void = () => {};
  const aborted = new Promise<typeof ABORTED>((resolve) => (onAbort = () => resolve(ABORTED)));
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  if (ctx.signal.aborted) onAbort();
  let timer: NodeJS.Timeout | undefined;
  try {
    // A subscriber dropped while this generator is parked at a yield must not become an
    // unhandled rejection; awaiting `pending` below still throws it.
    const watch = (p: Promise<ProcessEvent | undefined>) => (p.catch(() => {}), p);
    let pending = watch(sub.next());
    for (;;) {
      const due = new Promise<typeof KEEPALIVE_DUE>(
        (r) => (timer = setTimeout(() => r(KEEPALIVE_DUE), interval)),
      );
      const next = await Promise.race([pending, due, aborted]);
      clearTimeout(timer);
      if (next === KEEPALIVE_DUE) {
        yield KEEPALIVE;
        continue;
      }
      if (next === ABORTED) {
        const reason: unknown = ctx.signal.reason;
        if (reason instanceof ConnectError) throw reason; // the deadline
        return;
      }
      if (next === undefined) return;
      yield toWire(next);
      if (next.type === 'exit') return;
      pending = watch(sub.next());
    }
  } finally {
    clearTimeout(timer);
    ctx.signal.removeEventListener('abort', onAbort);
    sub.close();
  }
}
