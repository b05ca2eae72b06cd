/**
 * The processes envd started in one sandbox: what Start ran (E2B's ProcessConfig, tag, pty,
 * stdin), and a fan-out of each one's output to any number of subscribers (the Start stream
 * and Connect streams). The agent allows one subscriber per process (spec/agent-protocol.md
 * §5), so the registry holds that subscription and copies events out; nothing is replayed to
 * a late subscriber, which sees only what comes after it subscribed (E2B's Connect).
 */
import type { AgentClient, AgentProcess, ProcessEntry, ProcessHandlers } from '../agent-channel/client.ts';
import { CoveError, isCoveError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** What Start was asked to run, as given (List returns it). */
export interface ProcessConfig {
  cmd: string;
  args: string[];
  envs: Record<string, string>;
  cwd?: string;
}

/** The agent's report: exitCode is 128+signo when killed, and then signal is set. */
export type ProcessExit = Parameters<ProcessHandlers['onExit']>[0];

export type ProcessEvent =
  { type: 'data'; stream: 'stdout' | 'stderr' | 'pty'; data: Buffer } | { type: 'exit'; exit: ProcessExit };

/**
 * One subscriber's view: the events after it subscribed, ending with `exit`. next() resolves
 * undefined once exit was taken or after close(); it rejects when the subscriber was dropped
 * (its queue overflowed, or the agent connection was lost). While a next() is pending, calling
 * it again returns the same promise, so a caller may race it against a timer without losing
 * an event.
 */
export interface Subscription {
  next(): Promise<ProcessEvent | undefined>;
  close(): void;
}

export interface StartProcessInput {
  config: ProcessConfig;
  tag?: string;
  pty: boolean;
  /** A stdin pipe (else /dev/null). Ignored for a pty, whose master is the input. */
  stdin: boolean;
  /** The process's lifetime: killed (SIGKILL, its group) when it expires. */
  timeoutMs?: number;
}

export type ProcessSelector = { pid: number } | { tag: string };

/** A process the registry tracks. Control methods throw CoveError (invalid_argument when the
 * process cannot take the request, not_found when it has gone). */
export interface TrackedProcess {
  readonly pid: number;
  readonly tag: string | undefined;
  readonly config: ProcessConfig;
  readonly pty: boolean;
  /** Set once the process exited; a retained process answers Connect with it. */
  readonly exit: ProcessExit | undefined;
  subscribe(): Subscription;
  writeStdin(data: Buffer): Promise<void>;
  writePty(data: Buffer): Promise<void>;
  /** EOF on the pipe; a second call, or a process without a pipe, is a no-op (as envd). */
  closeStdin(): Promise<void>;
  resize(cols: number, rows: number): Promise<void>;
  /** SIGKILL goes to the process group and resolves once the exit is known (bounded wait);
   * SIGTERM goes to the process only, so that it can shut its own children down. */
  signal(signal: 'SIGKILL' | 'SIGTERM'): Promise<void>;
}

export interface ProcessRegistryOptions {
  /** The sandbox's agent; throws CoveError('unavailable') while it is not connected. */
  agent(): AgentClient;
  log: Logger;
  /** How long an exited process answers Connect with its exit (envd: 30 s). */
  retentionMs?: number;
  maxRetained?: number;
  /** Output a subscriber may have waiting before it is dropped. */
  maxQueuedBytes?: number;
  /** How long SIGKILL waits for the exit before answering. */
  killWaitMs?: number;
}

/**
 * Lifecycle: created with its sandbox, closed when the sandbox is killed (every subscriber
 * then fails with `unavailable`). A Start registers its process by pid once the agent
 * reports STARTED; an exit moves it to the retained set for `retentionMs` (at most
 * `maxRetained`, oldest dropped first). adopt() rebuilds the set from the agent after a
 * restart or a reconnect; methods called meanwhile wait for it.
 */
export interface ProcessRegistry {
  start(
    input: StartProcessInput,
    spawn: (handlers: ProcessHandlers) => Promise<AgentProcess>,
  ): Promise<{ process: TrackedProcess; events: Subscription }>;
  /** A live process, or a retained one that exited; not_found otherwise. */
  find(selector: ProcessSelector): Promise<TrackedProcess>;
  /** A live process only (what SendInput, SendSignal, Update act on); not_found otherwise. */
  live(selector: ProcessSelector): Promise<TrackedProcess>;
  list(): Promise<TrackedProcess[]>;
  /**
   * Lists the agent's processes and attaches those not followed here. What a restart loses:
   * output written while nobody was attached, the exit of a process that ended meanwhile
   * (the agent forgets it), and config the agent does not keep (envs; cwd is the resolved
   * one; stdin state is left to the agent to check). Call it right after connecting, before
   * any spawn: LIST_PROCS then lists nothing another caller spawned on the new connection.
   */
  adopt(): Promise<void>;
  close(): void;
}

const CHUNK = 64 * 1024; // coalesce queued output up to the agent's own DATA size

class Subscriber implements Subscription {
  private readonly queue: ProcessEvent[] = [];
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
      if (
        last?.type === 'data' &&
        last.stream === event.stream &&
        last.data.length + event.data.length <= CHUNK
      ) {
        last.data = Buffer.concat([last.data, event.data]);
      } else this.queue.push({ ...event });
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
    const event = this.queue.shift();
    if (event) {
      if (event.type === 'data') this.bytes -= event.data.length;
      return Promise.resolve(event);
    }
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

type StdinState = 'pipe' | 'closed' | 'none' | 'unknown';

class Tracked implements TrackedProcess {
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

export function createProcessRegistry(options: ProcessRegistryOptions): ProcessRegistry {
  const { log } = options;
  const opts = {
    retentionMs: options.retentionMs ?? 30_000,
    maxRetained: options.maxRetained ?? 256,
    maxQueuedBytes: options.maxQueuedBytes ?? 16 * 2 ** 20,
    killWaitMs: options.killWaitMs ?? 2_000,
  };
  const live = new Map<number, Tracked>();
  /** Exited processes by pid, oldest first (Map keeps insertion order). */
  const retained = new Map<number, { process: Tracked; timer: NodeJS.Timeout }>();
  let syncing: Promise<void> | undefined;
  let closed = false;

  function forget(pid: number): void {
    const r = retained.get(pid);
    if (!r) return;
    clearTimeout(r.timer);
    retained.delete(pid);
  }

  function exited(p: Tracked): void {
    if (p.pid === 0 || live.get(p.pid) !== p) return; // not registered yet: start() retains it
    live.delete(p.pid);
    retain(p);
  }

  function retain(p: Tracked): void {
    if (closed) return;
    forget(p.pid);
    const timer = setTimeout(() => forget(p.pid), opts.retentionMs);
    timer.unref();
    retained.set(p.pid, { process: p, timer });
    for (const [pid] of retained) {
      if (retained.size <= opts.maxRetained) break;
      forget(pid);
    }
  }

  function track(init: ConstructorParameters<typeof Tracked>[0]): Tracked {
    return new Tracked(init, opts, exited);
  }

  function claim(p: Tracked, handle: AgentProcess): void {
    p.pid = handle.pid;
    p.handle = handle;
    p.detached = false;
    // A pid or tag now names this process: a retained predecessor must not answer for it.
    forget(p.pid);
    if (p.tag !== undefined) for (const [pid, r] of retained) if (r.process.tag === p.tag) forget(pid);
    if (p.exit) retain(p);
    else live.set(p.pid, p);
  }

  async function settled(): Promise<void> {
    if (closed) throw new CoveError('unavailable', 'the sandbox is gone');
    if (syncing) await syncing;
  }

  async function sync(): Promise<void> {
    const agent = options.agent();
    const listed = await agent.listProcesses();
    const pids = new Set(listed.map((e) => e.pid));
    // A process followed before the connection dropped that is no longer listed ended while
    // nobody was attached: the agent forgot its exit, so it is gone without one.
    for (const [pid, p] of live) if (p.detached && !pids.has(pid)) live.delete(pid);
    await Promise.all(
      listed.map(async (entry: ProcessEntry) => {
        const known = live.get(entry.pid);
        if (known && !known.detached) return;
        const p =
          known ??
          track({
            config: { cmd: entry.argv[0] ?? '', args: entry.argv.slice(1), envs: {}, cwd: entry.cwd },
            ...(entry.tag !== undefined && { tag: entry.tag }),
            pty: entry.pty,
            stdin: entry.pty ? 'none' : 'unknown',
          });
        try {
          claim(p, await agent.attach(entry.pid, p.handlers));
        } catch (err) {
          live.delete(entry.pid);
          // ESRCH: it exited between the listing and the attach.
          if (!isCoveError(err, 'not_found')) log.warn({ err, pid: entry.pid }, 'cannot attach to a process');
        }
      }),
    );
  }

  function select(map: Map<number, Tracked>, selector: ProcessSelector): Tracked | undefined {
    if ('pid' in selector) return map.get(selector.pid);
    let found: Tracked | undefined;
    for (const p of map.values()) if (p.tag === selector.tag) found = p; // the newest wins
    return found;
  }

  function notFound(selector: ProcessSelector): CoveError {
    return 'pid' in selector
      ? new CoveError('not_found', `process with pid ${selector.pid} not found`)
      : new CoveError('not_found', `process with tag ${selector.tag} not found`);
  }

  const retainedMap = (): Map<number, Tracked> => new Map([...retained].map(([pid, r]) => [pid, r.process]));

  return {
    async start(input, spawn) {
      await settled();
      const p = track({
        config: input.config,
        ...(input.tag !== undefined && { tag: input.tag }),
        pty: input.pty,
        stdin: input.pty ? 'none' : input.stdin ? 'pipe' : 'none',
      });
      // Subscribed before the spawn: output that arrives with STARTED is not lost.
      const events = p.subscribe();
      try {
        claim(p, await spawn(p.handlers));
      } catch (err) {
        events.close();
        throw err;
      }
      if (closed) p.handlers.onDetach?.(new Error('sandbox closed'));
      else if (input.timeoutMs !== undefined && input.timeoutMs > 0 && !p.exit) {
        p.timer = setTimeout(() => {
          p.signal('SIGKILL').catch((err: unknown) =>
            log.warn({ err, pid: p.pid }, 'kill on timeout failed'),
          );
        }, input.timeoutMs);
        p.timer.unref();
      }
      return { process: p, events };
    },

    async find(selector) {
      await settled();
      const p = select(live, selector) ?? select(retainedMap(), selector);
      if (!p) throw notFound(selector);
      return p;
    },

    async live(selector) {
      await settled();
      const p = select(live, selector);
      if (!p) throw notFound(selector);
      return p;
    },

    async list() {
      await settled();
      return [...live.values()];
    },

    adopt() {
      syncing ??= sync()
        .catch((err: unknown) => log.warn({ err }, 'cannot list the sandbox processes'))
        .finally(() => (syncing = undefined));
      return syncing;
    },

    close() {
      closed = true;
      const gone = new CoveError('unavailable', 'the sandbox is gone');
      for (const p of live.values()) {
        clearTimeout(p.timer);
        for (const s of p.subscribers) s.fail(gone);
      }
      live.clear();
      for (const pid of [...retained.keys()]) forget(pid);
    },
  };
}
