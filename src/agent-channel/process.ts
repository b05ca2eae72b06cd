/** Processes: SPAWN/ATTACH streams, their output, and the per-process control requests. */
import { constants } from 'node:os';
import { CoveError } from '../core/errors.ts';
import type { Connection } from './connection.ts';
import { MAX_CHUNK, MAX_FRAME, MAX_PATH, ProtocolError, R, type Reader, T, Writer } from './protocol.ts';
import type { AgentProcess, ProcessEntry, ProcessHandlers, SpawnOptions } from './types.ts';

const SIGNALS: Record<string, number> = constants.signals;
const SIGNAL_NAMES = new Map(Object.entries(SIGNALS).map(([name, no]) => [no, name]));
const FD_NAMES = { 1: 'stdout', 2: 'stderr', 3: 'pty' } as const;

function invalid(message: string): CoveError {
  return new CoveError('invalid_argument', message);
}

function isId(v: number): boolean {
  return Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

function noNul(s: string, what: string): string {
  if (s.includes('\0')) throw invalid(`${what} contains NUL`);
  return s;
}

export function encodeSpawn(o: SpawnOptions): Writer {
  if (!Array.isArray(o.argv) || o.argv.length < 1 || o.argv.length > 4096)
    throw invalid('argv: 1..4096 entries');
  if (!o.cwd.startsWith('/') || Buffer.byteLength(o.cwd) > MAX_PATH)
    throw invalid('cwd must be an absolute path');
  if (!isId(o.uid) || !isId(o.gid)) throw invalid('uid/gid out of range');
  const groups = o.groups ?? [];
  if (groups.length > 64 || !groups.every(isId)) throw invalid('groups: at most 64 ids');
  const tag = o.tag ?? '';
  if (Buffer.byteLength(tag) > 64) throw invalid('tag: at most 64 bytes');
  if (o.pty && ![o.pty.cols, o.pty.rows].every((v) => Number.isInteger(v) && v >= 1 && v <= 4096)) {
    throw invalid('pty size: 1..4096');
  }
  const env = Object.entries(o.env);
  if (env.length > 4096) throw invalid('env: at most 4096 entries');
  const w = new Writer()
    .u32(o.uid)
    .u32(o.gid)
    .u8((o.pty ? 1 : 0) | (o.stdin ? 2 : 0))
    .u16(o.pty?.cols ?? 0)
    .u16(o.pty?.rows ?? 0)
    .u32(groups.length);
  for (const g of groups) w.u32(g);
  w.str(noNul(o.cwd, 'cwd')).str(noNul(tag, 'tag')).u32(o.argv.length);
  for (const a of o.argv) w.str(noNul(a, 'argv'));
  w.u32(env.length);
  for (const [k, v] of env) {
    if (k === '' || k.includes('=')) throw invalid(`env name ${JSON.stringify(k)}`);
    w.str(noNul(`${k}=${v}`, 'env'));
  }
  if (w.length > MAX_FRAME) throw invalid(`argv and env take ${w.length} bytes; the limit is ${MAX_FRAME}`);
  return w;
}

function safely(fn: () => void): void {
  try {
    fn();
  } catch {
    // A throwing handler is the caller's bug; it must not be mistaken for a bad agent frame.
  }
}

class Process implements AgentProcess {
  readonly pid: number;
  readonly pty: boolean;
  private readonly conn: Connection;
  private tail: Promise<void> = Promise.resolve();

  constructor(conn: Connection, pid: number, pty: boolean) {
    this.conn = conn;
    this.pid = pid;
    this.pty = pty;
  }

  private control(type: number, w: Writer, what: string): Promise<void> {
    return this.conn.unary(type, w, `${what} ${this.pid}`, (r) => r.done());
  }

  /** Writes and closeStdin run one after another: the agent takes one stdin write at a time. */
  private serial(fn: () => Promise<void>): Promise<void> {
    const next = this.tail.then(fn);
    this.tail = next.catch(() => {});
    return next;
  }

  write(data: Buffer): Promise<void> {
    return this.serial(async () => {
      for (let off = 0; off < data.length || off === 0; off += MAX_CHUNK) {
        const chunk = data.subarray(off, off + MAX_CHUNK);
        await this.control(T.STDIN, new Writer().u32(this.pid).bytes(chunk), 'stdin');
        if (data.length === 0) break;
      }
    });
  }

  closeStdin(): Promise<void> {
    return this.serial(() => this.control(T.CLOSE_STDIN, new Writer().u32(this.pid), 'close stdin'));
  }

  signal(signal: string | number, opts?: { group?: boolean }): Promise<void> {
    const no = typeof signal === 'number' ? signal : SIGNALS[signal];
    if (no === undefined || !Number.isInteger(no) || no < 1 || no > 64) {
      return Promise.reject(invalid(`unknown signal ${signal}`));
    }
    const w = new Writer()
      .u32(this.pid)
      .u32(no)
      .u8(opts?.group === false ? 0 : 1);
    return this.control(T.SIGNAL, w, 'signal');
  }

  resize(cols: number, rows: number): Promise<void> {
    if (![cols, rows].every((v) => Number.isInteger(v) && v >= 1 && v <= 4096)) {
      return Promise.reject(invalid('pty size: 1..4096'));
    }
    return this.control(T.RESIZE, new Writer().u32(this.pid).u16(cols).u16(rows), 'resize');
  }
}

/** Opens a SPAWN or ATTACH stream; resolves at STARTED, then feeds the handlers until EXIT. */
export function openProcess(
  conn: Connection,
  type: number,
  payload: Writer,
  what: string,
  handlers: ProcessHandlers,
  expectPid?: number,
): Promise<AgentProcess> {
  return new Promise((resolve, reject) => {
    let proc: Process | undefined;
    conn.open(type, payload, {
      what,
      frame: (t, r) => {
        if (!proc) {
          if (t !== R.STARTED) throw new ProtocolError(`${what}: expected STARTED`);
          const pid = r.u32();
          const flags = r.u8();
          r.done();
          if (pid < 1 || flags > 3 || (expectPid !== undefined && pid !== expectPid)) {
            throw new ProtocolError(`${what}: bad STARTED`);
          }
          proc = new Process(conn, pid, (flags & 1) === 1);
          resolve(proc);
          return false;
        }
        if (t === R.DATA) {
          const fd = r.u8();
          const data = r.rest();
          const pty = proc.pty;
          if ((pty ? fd !== 3 : fd !== 1 && fd !== 2) || data.length < 1 || data.length > MAX_CHUNK) {
            throw new ProtocolError(`${what}: bad DATA`);
          }
          const name = FD_NAMES[fd as 1 | 2 | 3];
          safely(() => handlers.onData(name, Buffer.from(data)));
          return false;
        }
        if (t === R.EXIT) {
          const code = r.i32();
          const signo = r.u8();
          r.done();
          if (signo > 64 || (signo === 0 && (code < 0 || code > 255)))
            throw new ProtocolError(`${what}: bad EXIT`);
          const signal = signo ? (SIGNAL_NAMES.get(signo) ?? `SIG${signo}`) : undefined;
          safely(() => handlers.onExit(signal ? { exitCode: 128 + signo, signal } : { exitCode: code }));
          return true;
        }
        throw new ProtocolError(`${what}: unexpected frame 0x${t.toString(16)}`);
      },
      fail: (err) => {
        if (!proc) reject(err);
        else safely(() => handlers.onDetach?.(err));
      },
    });
  });
}

export function readProcEntry(r: Reader): ProcessEntry {
  const pid = r.u32();
  const flags = r.u8();
  const cwd = r.str(MAX_PATH);
  const tag = r.str(64);
  const argc = r.u32();
  if (argc < 1 || argc > 4096 || flags > 3) throw new ProtocolError('bad PROC');
  const argv: string[] = [];
  for (let i = 0; i < argc; i++) argv.push(r.str(MAX_FRAME));
  r.done();
  const entry: ProcessEntry = { pid, argv, cwd, pty: (flags & 1) === 1 };
  if (tag !== '') entry.tag = tag;
  return entry;
}
