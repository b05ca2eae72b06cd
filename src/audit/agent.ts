import type {
  AgentClient,
  AgentProcess,
  FsUser,
  ProcessHandlers,
  SpawnOptions,
} from '../agent-channel/client.ts';
import { CoveError } from '../core/errors.ts';
import { currentRequest } from '../core/request-context.ts';
import type { Audit } from './index.ts';
import { type ContentHash, contentHash } from './sha256.ts';

/** Agent calls as metrics count them; `command` is a process's life, spawn to exit. */
export type AgentOp =
  | 'spawn'
  | 'command'
  | 'attach'
  | 'signal'
  | 'read'
  | 'write'
  | 'rename'
  | 'remove'
  | 'mkdir'
  | 'stat'
  | 'list'
  | 'metadata'
  | 'watch';

/** Told of every agent call once it settled: 'ok', or the CoveError code it failed with. */
export type AgentObserver = (op: AgentOp, seconds: number, outcome: string) => void;

export interface ObservedAgentOptions {
  audit: Audit;
  /** Bytes of stdout and of stderr kept in each `process.end` record (0: none, the default). */
  outputBytes: number;
  observe?: AgentObserver;
}

/** A Buffer written at once larger than this goes by in slices, so the hash keeps pace. */
const BUFFER_INLINE = 1 << 20;

function* slices(buf: Buffer, size: number): Generator<Buffer> {
  for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
}

const outcomeOf = (err: unknown): string => (err instanceof CoveError ? err.code : 'internal');

/** What is known of a process started here until it exits (its output may move to attach()). */
interface Tracked {
  pid?: number;
  argv: string[];
  startedAt: number;
  /** Its process.start is recorded: an exit that arrives first (same read) waits for it. */
  started: boolean;
  pendingExit?: { exitCode: number; signal?: string };
  /** Who started it: its end is recorded from the agent's socket, outside that request. */
  keyId: string | null;
  requestId: string | null;
  exitTo?: ProcessHandlers;
  bytes: { stdout: number; stderr: number; pty: number };
  kept: { stdout: Buffer[]; stderr: Buffer[]; size: { stdout: number; stderr: number } };
}

/**
 * The agent client of one sandbox, with every action in it recorded in the audit trail before
 * its caller hears of it (processes started and ended, files written, renamed, removed,
 * directories made, signals) and every call timed for the metrics. Every front end (envd, the
 * API's exec, MCP, template start commands) reaches sandboxes through this client, so none
 * can act unrecorded. Reads are timed, not recorded. File contents are hashed (sha256) as
 * they stream past; process output is counted, and kept only when `outputBytes` says so.
 */
export function observedAgent(
  sandboxId: string,
  agent: AgentClient,
  opts: ObservedAgentOptions,
): AgentClient {
  const { audit } = opts;
  const observe = opts.observe ?? (() => {});
  const processes = new Map<number, Tracked>();

  async function timed<T>(op: AgentOp, run: () => Promise<T>, after?: (outcome: string, value?: T) => void) {
    const t0 = performance.now();
    try {
      const value = await run();
      after?.('ok', value);
      observe(op, (performance.now() - t0) / 1000, 'ok');
      return value;
    } catch (err) {
      after?.(outcomeOf(err));
      observe(op, (performance.now() - t0) / 1000, outcomeOf(err));
      throw err;
    }
  }

  function keep(t: Tracked, stream: 'stdout' | 'stderr', data: Buffer): void {
    const room = opts.outputBytes - t.kept.size[stream];
    if (room <= 0) return;
    const part = data.subarray(0, room);
    t.kept[stream].push(Buffer.from(part));
    t.kept.size[stream] += part.length;
  }

  function recordExit(t: Tracked, result: { exitCode: number; signal?: string }): void {
    if (t.pid !== undefined) processes.delete(t.pid);
    const seconds = (performance.now() - t.startedAt) / 1000;
    audit.record({
      sandboxId,
      keyId: t.keyId,
      requestId: t.requestId,
      action: 'process.end',
      outcome: result.exitCode === 0 ? 'ok' : 'failed',
      fields: {
        pid: t.pid ?? null,
        argv: t.argv,
        exitCode: result.exitCode,
        ...(result.signal !== undefined && { signal: result.signal }),
        durationMs: Math.round(seconds * 1000),
        stdoutBytes: t.bytes.stdout,
        stderrBytes: t.bytes.stderr,
        ...(t.bytes.pty > 0 && { ptyBytes: t.bytes.pty }),
        ...(opts.outputBytes > 0 && {
          stdout: Buffer.concat(t.kept.stdout).toString('utf8'),
          stderr: Buffer.concat(t.kept.stderr).toString('utf8'),
        }),
      },
    });
    observe('command', seconds, result.exitCode === 0 ? 'ok' : 'failed');
  }

  /**
   * Handlers that count output and record the exit before the caller's own onExit runs. The
   * agent's frames are handled synchronously, so output and even the exit of a short command
   * can arrive before spawn()'s promise settles: the exit then waits for the start's record.
   */
  function tracking(t: Tracked, handlers: ProcessHandlers): ProcessHandlers {
    return {
      onData(stream, data) {
        t.bytes[stream] += data.length;
        if (stream !== 'pty') keep(t, stream, data);
        handlers.onData(stream, data);
      },
      onExit(result) {
        if (!t.started) {
          t.pendingExit = result;
          t.exitTo = handlers;
          return;
        }
        recordExit(t, result);
        handlers.onExit(result);
      },
      ...(handlers.onDetach && { onDetach: handlers.onDetach.bind(handlers) }),
    };
  }

  function signalling(proc: AgentProcess): AgentProcess {
    return {
      get pid() {
        return proc.pid;
      },
      get pty() {
        return proc.pty;
      },
      write: (data) => proc.write(data),
      closeStdin: () => proc.closeStdin(),
      resize: (cols, rows) => proc.resize(cols, rows),
      signal: (signal, o) =>
        timed(
          'signal',
          () => proc.signal(signal, o),
          (outcome) =>
            audit.record({
              sandboxId,
              action: 'process.signal',
              outcome,
              fields: { pid: proc.pid, signal: String(signal), group: o?.group ?? true },
            }),
        ),
    };
  }

  function spawn(options: SpawnOptions, handlers: ProcessHandlers): Promise<AgentProcess> {
    const t: Tracked = {
      argv: options.argv,
      startedAt: performance.now(),
      started: false,
      keyId: currentRequest()?.keyId ?? null,
      requestId: currentRequest()?.requestId ?? null,
      bytes: { stdout: 0, stderr: 0, pty: 0 },
      kept: { stdout: [], stderr: [], size: { stdout: 0, stderr: 0 } },
    };
    const fields = {
      argv: options.argv,
      user: options.env.USER ?? String(options.uid),
      uid: options.uid,
      cwd: options.cwd,
      pty: options.pty !== undefined,
      ...(options.tag !== undefined && { tag: options.tag }),
    };
    return timed(
      'spawn',
      () => agent.spawn(options, tracking(t, handlers)),
      (outcome, proc) => {
        audit.record({
          sandboxId,
          action: 'process.start',
          outcome,
          fields: proc ? { pid: proc.pid, ...fields } : fields,
        });
        if (!proc) return;
        t.pid = proc.pid;
        t.started = true;
        if (t.pendingExit && t.exitTo) {
          recordExit(t, t.pendingExit);
          t.exitTo.onExit(t.pendingExit);
        } else processes.set(proc.pid, t);
      },
    ).then(signalling);
  }

  /** The bytes as they go by, into `sum`: a stream's bulk is hashed on the hash thread. */
  function hashing(data: Buffer | AsyncIterable<Buffer>, sum: ContentHash): Buffer | AsyncIterable<Buffer> {
    if (Buffer.isBuffer(data) && data.length <= BUFFER_INLINE) {
      void sum.update(data); // within one block: nothing goes to the worker, nothing to wait for
      return data;
    }
    const chunks = Buffer.isBuffer(data) ? slices(data, BUFFER_INLINE) : data;
    return (async function* () {
      for await (const chunk of chunks) {
        const full = sum.update(chunk);
        if (full) await full;
        yield chunk;
      }
    })();
  }

  const fileRecord =
    (action: string, fields: Record<string, string | number | boolean>) => (outcome: string) =>
      audit.record({ sandboxId, action, outcome, fields });

  return {
    spawn,
    // A process adopted after a restart was not seen starting: its end is still recorded.
    attach: (pid, handlers) => {
      let t = processes.get(pid);
      if (!t) {
        t = {
          pid,
          argv: [],
          startedAt: performance.now(),
          started: true,
          keyId: null,
          requestId: null,
          bytes: { stdout: 0, stderr: 0, pty: 0 },
          kept: { stdout: [], stderr: [], size: { stdout: 0, stderr: 0 } },
        };
        processes.set(pid, t);
      }
      return timed('attach', () => agent.attach(pid, tracking(t, handlers))).then(signalling);
    },
    listProcesses: () => agent.listProcesses(),
    stat: (path, user) => timed('stat', () => agent.stat(path, user)),
    list: (path, depth, user) => timed('list', () => agent.list(path, depth, user)),
    mkdir: (path, user) =>
      timed(
        'mkdir',
        () => agent.mkdir(path, user),
        (outcome, created) =>
          audit.record({
            sandboxId,
            action: 'file.mkdir',
            outcome,
            fields: { path, uid: user.uid, ...(created !== undefined && { created }) },
          }),
      ),
    rename: (from, to, user) =>
      timed(
        'rename',
        () => agent.rename(from, to, user),
        fileRecord('file.rename', { from, to, uid: user.uid }),
      ),
    remove: (path, user) =>
      timed('remove', () => agent.remove(path, user), fileRecord('file.remove', { path, uid: user.uid })),
    readFile: (path, user) => timedRead(agent.readFile(path, user), observe),
    writeFile(path: string, data: Buffer | AsyncIterable<Buffer>, user: FsUser) {
      const sum = contentHash();
      let sha256: string | undefined;
      return timed(
        'write',
        async () => {
          try {
            const info = await agent.writeFile(path, hashing(data, sum), user);
            sha256 = await sum.digest(); // hashed beside the write: ready about when it ends
            return info;
          } finally {
            sum.abort(); // a failed write's hash is never asked for
          }
        },
        (outcome) =>
          audit.record({
            sandboxId,
            action: 'file.write',
            outcome,
            fields: { path, uid: user.uid, size: sum.size, ...(outcome === 'ok' && sha256 && { sha256 }) },
          }),
      );
    },
    setMetadata: (path, metadata, user) => timed('metadata', () => agent.setMetadata(path, metadata, user)),
    watch: (path, o, user) => timed('watch', () => agent.watch(path, o, user)),
    ping: () => agent.ping(),
    close: () => agent.close(),
    closed: agent.closed,
  };
}

/** A read is timed from its first request to its last chunk (or its failure). */
function timedRead(chunks: AsyncIterable<Buffer>, observe: AgentObserver): AsyncIterable<Buffer> {
  return (async function* () {
    const t0 = performance.now();
    try {
      yield* chunks;
      observe('read', (performance.now() - t0) / 1000, 'ok');
    } catch (err) {
      observe('read', (performance.now() - t0) / 1000, outcomeOf(err));
      throw err;
    }
  })();
}
