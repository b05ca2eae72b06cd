import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { outsideRequest } from './request-context.ts';

/** How a command ended, with what it wrote (nothing when it wrote to a log file). */
export interface Ended {
  code: number | null;
  signal: number;
  stdout: string;
  stderr: string;
}

export interface RunnerCall {
  /** Bytes for its stdin (else /dev/null). */
  input?: string | Buffer;
  /** Sent SIGTERM after this long, as execFile's `timeout`. */
  timeoutMs?: number;
  /** Its stdout and stderr go to this file (appended) instead of back to us. */
  log?: string;
}

/** The helper's path (agent/build/cove-run); COVE_RUNNER overrides it, `off` disables it. */
const HELPER = (() => {
  const env = process.env.COVE_RUNNER;
  if (env === 'off') return undefined;
  const path = env ?? fileURLToPath(new URL('../../agent/build/cove-run', import.meta.url));
  return existsSync(path) ? path : undefined;
})();

interface Pending {
  resolve: (e: Ended) => void;
  reject: (err: Error) => void;
  out: Buffer[];
  err: Buffer[];
}

let helper: { child: ChildProcess; pending: Map<number, Pending> } | undefined;
let nextId = 1;
/** Commands beyond what the helper runs at once (its MAX_CHILDREN is 256) wait here. */
const MAX_AT_ONCE = 192;
const waiting: Array<() => void> = [];

/**
 * Starts host commands through agent/run/cove-run.c, one small helper process kept for the
 * server's life: Node's own spawn forks the whole server and blocks the event loop for
 * milliseconds per command, longer the bigger the server (the C file says how much). False
 * when the helper is not built or COVE_RUNNER=off: callers use child_process then.
 */
export function runnerAvailable(): boolean {
  return HELPER !== undefined;
}

/** The helper's path, for its other mode (`cove-run --hide-proc-sys-net`: runtime/runsc/invoke.ts). */
export function runnerPath(): string | undefined {
  return HELPER;
}

function start(): NonNullable<typeof helper> {
  if (helper) return helper;
  // Spawned outside any request: it outlives the one that happened to start it.
  const child = outsideRequest(() => spawn(HELPER!, [], { stdio: ['pipe', 'pipe', 'inherit'] }));
  const pending = new Map<number, Pending>();
  const self = { child, pending };
  helper = self;
  idle(self);
  let buf: Buffer = Buffer.alloc(0);
  child.stdout.on('data', (chunk: Buffer) => {
    buf = buf.length ? Buffer.concat([buf, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (buf.length - off - 4 < len) break;
      const id = buf.readUInt32LE(off + 4);
      const kind = buf[off + 8];
      const data = buf.subarray(off + 9, off + 4 + len);
      off += 4 + len;
      const call = pending.get(id);
      if (!call) continue;
      if (kind === 1) call.out.push(Buffer.from(data));
      else if (kind === 2) call.err.push(Buffer.from(data));
      else if (kind === 3) {
        settle(self, id);
        const code = data.readInt32LE(0);
        call.resolve({
          code: code < 0 ? null : code,
          signal: data.readInt32LE(4),
          stdout: Buffer.concat(call.out).toString('utf8'),
          stderr: Buffer.concat(call.err).toString('utf8'),
        });
      } else {
        settle(self, id);
        call.reject(new Error(data.toString('utf8')));
      }
    }
    buf = off === buf.length ? Buffer.alloc(0) : buf.subarray(off);
  });
  const gone = (why: string) => {
    if (helper === self) helper = undefined;
    for (const call of pending.values()) call.reject(new Error(`cove-run ${why}`));
    pending.clear();
  };
  child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
  child.on('error', (err) => gone(`failed: ${err.message}`));
  child.stdin.on('error', () => {}); // an exit is reported by 'exit'
  return self;
}

// The helper keeps the process alive only while a command runs: a CLI exits when its work is done.
type Helper = NonNullable<typeof helper>;
function idle(h: Helper): void {
  h.child.unref();
  (h.child.stdout as unknown as { unref(): void }).unref();
}
function busy(h: Helper): void {
  h.child.ref();
  (h.child.stdout as unknown as { ref(): void }).ref();
}
function settle(h: Helper, id: number): void {
  h.pending.delete(id);
  if (h.pending.size === 0) idle(h);
}

/** Runs `file args` through the helper (never a shell) and resolves when it ended, whatever its code. */
export async function runThroughHelper(
  file: string,
  args: readonly string[],
  call: RunnerCall = {},
): Promise<Ended> {
  while ((helper?.pending.size ?? 0) >= MAX_AT_ONCE) await new Promise<void>((r) => waiting.push(r));
  try {
    return await send(file, args, call);
  } finally {
    waiting.shift()?.();
  }
}

function send(file: string, args: readonly string[], call: RunnerCall): Promise<Ended> {
  const h = start();
  const { child, pending } = h;
  const id = nextId;
  nextId = (nextId % 0xffff_fff0) + 1;
  const strings = [call.log ?? '', file, ...args];
  if (strings.some((s) => s.includes('\0'))) return Promise.reject(new Error('NUL in a command argument'));
  const input = call.input === undefined ? Buffer.alloc(0) : Buffer.from(call.input);
  const body = Buffer.from(strings.join('\0') + '\0', 'utf8');
  const head = Buffer.alloc(20);
  head.writeUInt32LE(16 + body.length + input.length, 0);
  head.writeUInt32LE(id, 4);
  head.writeUInt32LE(call.timeoutMs ?? 0, 8);
  head.writeUInt32LE(strings.length, 12);
  head.writeUInt32LE(input.length, 16);
  return new Promise<Ended>((resolve, reject) => {
    if (pending.size === 0) busy(h);
    pending.set(id, { resolve, reject, out: [], err: [] });
    child.stdin!.write(input.length ? Buffer.concat([head, body, input]) : Buffer.concat([head, body]));
  });
}
