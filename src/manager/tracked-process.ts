/**
 * One tracked process and its subscribers (processes.ts is the registry that holds them).
 * The agent feeds `handlers` synchronously per frame; every subscriber gets a copy of each
 * event into a queue of its own, bounded in bytes.
 */
import type { AgentProcess, ProcessHandlers } from '../agent-channel/client.ts';
import { CoveError, isCoveError } from '../core/errors.ts';
import type {
  ProcessConfig,
  ProcessEvent,
  ProcessExit,
  ProcessRegistryOptions,
  Subscription,
  TrackedProcess,
} from './processes.ts';

const CHUNK = 64 * 1024; // coalesce queued output up to the agent's own DATA size

/** A queued event; consecutive output of one stream is kept as parts and joined when taken. */
type Queued =
  ProcessEvent | { type: 'parts'; stream: 'stdout' | 'stderr' | 'pty'; parts: Buffer[]; size: number };

class Subscriber implements Subscription {
  private readonly queue: Queued[] = [];
  private bytes = 0;
  private ended = false;
  private failure: Error | undefined;
  private waiting:
    | {
        promise: Promise<ProcessEvent | undefined>;
        resolve: (e?: ProcessEvent) => void;
        reject: (err: Error) => void;
      }
    | undefined;
  private readonly owner: Set<Subscriber>;
  private readonly maxBytes: number;

  constructor(owner: Set<Subscriber>, maxBytes: number) {
    this.owner = owner;
    this.maxBytes = maxBytes;
    owner.add(this);
  }

  push(event: ProcessEvent): void {
    if (this.ended) return;
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = undefined;
      w.resolve(event);
    } else if (event.type === 'data') {
      const last = this.queue.at(-1);
      if (last?.type === 'parts' && last.stream === event.stream && last.size + event.data.length <= CHUNK) {
        last.parts.push(event.data);
        last.size += event.data.length;
      } else
        this.queue.push({
          type: 'parts',
          stream: event.stream,
          parts: [event.data],
          size: event.data.length,
        });
      this.bytes += event.data.length;
      if (this.bytes > this.maxBytes) {
        const mib = Math.round(this.maxBytes / 2 ** 20);
        this.fail(
          new CoveError(
            'resource_exhausted',
            `output was not read fast enough (over ${mib} MiB waiting); the process still runs: Connect to follow it again`,
          ),
        );
      }
    } else this.queue.push(event);
    if (event.type === 'exit') this.finish();
  }

  /** The last event was pushed: after the queue drains, next() resolves undefined. */
  private finish(): void {
    this.ended = true;
    this.owner.delete(this);
  }

  fail(err: Error): void {
    if (this.ended) return;
    this.finish();
    this.queue.length = 0;
    this.bytes = 0;
    this.failure = err;
    this.waiting?.reject(err);
    this.waiting = undefined;
  }

  next(): Promise<ProcessEvent | undefined> {
    if (this.waiting) return this.waiting.promise;
    const queued = this.queue.shift();
    if (queued?.type === 'parts') {
      this.bytes -= queued.size;
      const data = queued.parts.length === 1 ? queued.parts[0]! : Buffer.concat(queued.parts, queued.size);
      return Promise.resolve({ type: 'data', stream: queued.stream, data });
    }
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    if (this.ended) return Promise.resolve(undefined);
    let resolve!: (e?: ProcessEvent) => void;
    let reject!: (err: Error) => void;
    const promise = new Promise<ProcessEvent | undefined>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.waiting = { promise, resolve, reject };
    return promise;
  }

  close(): void {
    this.finish();
    this.queue.length = 0;
    this.waiting?.resolve(undefined);
    this.waiting = undefined;
  }
}

export type StdinState = 'pipe' | 'closed' | 'none' | 'unknown';

export class Tracked implements TrackedProcess {
  pid = 0;
  readonly tag: string | undefined;
  readonly config: ProcessConfig;
  readonly pty: boolean;
  exit: ProcessExit | undefined;
  stdin: StdinState;
  handle: AgentProcess | undefined;
  /** The agent stream ended without an exit: the connection was lost. */
  detached = false;
  timer: NodeJS.Timeout | undefined;
  readonly subscribers = new Set<Subscriber>();
  private readonly exitWaiters = new Set<() => void>();
  private readonly opts: Required<Omit<ProcessRegistryOptions, 'agent' | 'log'>>;
  private readonly onExit: (p: Tracked) => void;

  constructor(
    init: { config: ProcessConfig; tag?: string; pty: boolean; stdin: StdinState },
    opts: Tracked['opts'],
    onExit: (p: Tracked) => void,
  ) {
    this.config = init.config;
    this.tag = init.tag;
    this.pty = init.pty;
    this.stdin = init.stdin;
    this.opts = opts;
    this.onExit = onExit;
  }

  /** Fed by the agent's one stream for this process; they run synchronously per frame. */
  readonly handlers: ProcessHandlers = {
    onData: (stream, data) => {
      for (const s of this.subscribers) s.push({ type: 'data', stream, data });
    },
    onExit: (exit) => {
      this.exit = exit;
      clearTimeout(this.timer);
      for (const s of this.subscribers) s.push({ type: 'exit', exit });
      for (const wake of this.exitWaiters) wake();
      this.exitWaiters.clear();
      this.onExit(this);
    },
    onDetach: () => {
      this.detached = true;
      const err = new CoveError(
        'unavailable',
        `lost the connection to the sandbox's agent; process ${this.pid} may still run: Connect to follow it again`,
      );
      for (const s of this.subscribers) s.fail(err);
    },
  };

  subscribe(): Subscription {
    const sub = new Subscriber(this.subscribers, this.opts.maxQueuedBytes);
    if (this.exit) sub.push({ type: 'exit', exit: this.exit });
    return sub;
  }

  private agentProcess(): AgentProcess {
    if (!this.handle || this.detached)
      throw new CoveError('unavailable', `process ${this.pid} is not reachable right now`);
    return this.handle;
  }

  async writeStdin(data: Buffer): Promise<void> {
    if (this.pty)
      throw new CoveError(
        'invalid_argument',
        'tty assigned to process — input should be written to the pty, not the stdin',
      );
    if (this.stdin === 'none' || this.stdin === 'closed')
      throw new CoveError('invalid_argument', `stdin of process ${this.pid} not enabled or closed`);
    if (data.length > 0) await this.agentProcess().write(data);
  }

  async writePty(data: Buffer): Promise<void> {
    if (!this.pty)
      throw new CoveError(
        'invalid_argument',
        'tty not assigned to process — input should be written to the stdin, not the tty',
      );
    if (data.length > 0) await this.agentProcess().write(data);
  }

  async closeStdin(): Promise<void> {
    if (this.pty)
      throw new CoveError(
        'invalid_argument',
        'cannot close stdin for PTY process — send Ctrl+D (0x04) instead',
      );
    if (this.stdin !== 'pipe' && this.stdin !== 'unknown') return;
    await this.agentProcess().closeStdin();
    this.stdin = 'closed';
  }

  async resize(cols: number, rows: number): Promise<void> {
    if (!this.pty) throw new CoveError('invalid_argument', `tty not assigned to process ${this.pid}`);
    await this.agentProcess().resize(cols, rows);
  }

  async signal(signal: 'SIGKILL' | 'SIGTERM'): Promise<void> {
    if (this.exit) throw new CoveError('not_found', `process with pid ${this.pid} not found`);
    try {
      await this.agentProcess().signal(signal, { group: signal === 'SIGKILL' });
    } catch (err) {
      if (isCoveError(err, 'not_found'))
        throw new CoveError('not_found', `process with pid ${this.pid} not found`);
      throw err;
    }
    if (signal !== 'SIGKILL' || this.exit) return;
    // The agent reaps the process and reports EXIT within a millisecond or so; waiting for it
    // makes `kill -0 <pid>` right after kill() fail, as E2B's tests expect. Bounded, so that
    // a process stuck in the kernel (D state) cannot hold the RPC.
    let wake!: () => void;
    const timer = setTimeout(() => wake(), this.opts.killWaitMs);
    await new Promise<void>((resolve) => this.exitWaiters.add((wake = resolve)));
    clearTimeout(timer);
    this.exitWaiters.delete(wake);
  }
}
