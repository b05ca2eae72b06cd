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
import { Tracked } from './tracked-process.ts';

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
