/** File operations: unary requests, credit-paced reads, socket-paced writes, and watches. */
import { CoveError } from '../core/errors.ts';
import type { Connection } from './connection.ts';
import { type HostFiles, bulkBuffer, readAll, writeAll } from './host-files.ts';
import {
  F,
  MAX_CHUNK,
  META,
  MAX_PATH,
  ProtocolError,
  R,
  type Reader,
  T,
  Writer,
  baseName,
  checkRelative,
  joinPath,
  readEntry,
} from './protocol.ts';
import type { FileInfo, FsUser, Watch, WatchEvent } from './types.ts';

/** How far a read may run ahead of its consumer: what one stream may hold in memory here. */
const READ_WINDOW = 16 * MAX_CHUNK;
/** Credit goes back in batches this large: one CREDIT (and one agent wake-up) per 256 KiB. */
const CREDIT_BATCH = READ_WINDOW / 4;
const MAX_LIST = 10_000;
/** A watch whose consumer stops reading fails rather than queueing without bound. */
const MAX_QUEUED_EVENTS = 10_000;
const EVENT_TYPES = [undefined, 'create', 'write', 'remove', 'rename', 'chmod'] as const;

export function checkPath(path: string): string {
  if (
    typeof path !== 'string' ||
    !path.startsWith('/') ||
    path.includes('\0') ||
    Buffer.byteLength(path) > MAX_PATH
  ) {
    throw new CoveError('invalid_argument', `path must be absolute, without NUL, at most ${MAX_PATH} bytes`);
  }
  return path;
}

function userHead(user: FsUser): Writer {
  const ok = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
  if (!ok(user.uid) || !ok(user.gid)) throw new CoveError('invalid_argument', 'uid/gid out of range');
  const w = new Writer().u32(user.uid).u32(user.gid);
  if (user.elevated) w.flags = F.ELEVATED;
  return w;
}

/** The agent's entry, named by the path the host asked for (never by what the agent claims). */
function entryAt(r: Reader, path: string): FileInfo {
  const { info } = readEntry(r);
  r.done();
  return { name: baseName(path), path, ...info };
}

export function stat(conn: Connection, path: string, user: FsUser): Promise<FileInfo> {
  const w = userHead(user).str(checkPath(path));
  return conn.unary(T.STAT, w, `stat ${path}`, (r) => entryAt(r, path));
}

export function mkdir(conn: Connection, path: string, user: FsUser): Promise<boolean> {
  const w = userHead(user).str(checkPath(path));
  return conn.unary(T.MKDIR, w, `mkdir ${path}`, (r) => {
    const created = r.u8();
    r.done();
    if (created > 1) throw new ProtocolError('bad MKDIR reply');
    return created === 1;
  });
}

export function rename(conn: Connection, from: string, to: string, user: FsUser): Promise<FileInfo> {
  const w = userHead(user).str(checkPath(from)).str(checkPath(to));
  return conn.unary(T.RENAME, w, `rename ${from} → ${to}`, (r) => entryAt(r, to));
}

const PRINTABLE = /^[\x20-\x7e]*$/;

export function setMetadata(
  conn: Connection,
  path: string,
  metadata: Record<string, string>,
  user: FsUser,
): Promise<FileInfo> {
  const w = userHead(user).str(checkPath(path));
  const pairs = Object.entries(metadata);
  let total = 0;
  for (const [k, v] of pairs) {
    total += META.PREFIX_LEN + k.length + v.length;
    if (k === '' || k.length > META.MAX_KEY || !PRINTABLE.test(k) || !PRINTABLE.test(v))
      throw new CoveError('invalid_argument', `metadata key ${JSON.stringify(k)} or its value is not valid`);
  }
  if (total > META.MAX_SET || pairs.length > META.MAX_PAIRS)
    throw new CoveError('invalid_argument', `metadata takes ${total} bytes, more than ${META.MAX_SET}`);
  w.u16(pairs.length);
  for (const [k, v] of pairs) w.str(k).str(v);
  return conn.unary(T.SETMETA, w, `set metadata of ${path}`, (r) => entryAt(r, path));
}

export function remove(conn: Connection, path: string, user: FsUser): Promise<void> {
  const w = userHead(user).str(checkPath(path));
  return conn.unary(T.REMOVE, w, `remove ${path}`, (r) => r.done());
}

export function list(conn: Connection, path: string, depth: number, user: FsUser): Promise<FileInfo[]> {
  if (!Number.isInteger(depth) || depth < 1) throw new CoveError('invalid_argument', 'depth must be ≥ 1');
  const w = userHead(user).u32(Math.min(depth, 64)).str(checkPath(path));
  const what = `list ${path}`;
  const out: FileInfo[] = [];
  return new Promise((resolve, reject) => {
    conn.open(T.LISTDIR, w, {
      what,
      frame: (t, r) => {
        if (t === R.OK) {
          r.done();
          resolve(out);
          return true;
        }
        if (t !== R.ENTRIES) throw new ProtocolError(`${what}: unexpected frame`);
        do {
          const { info, path: rel } = readEntry(r);
          const abs = joinPath(path, checkRelative(rel));
          if (out.length >= MAX_LIST) throw new ProtocolError(`${what}: more than ${MAX_LIST} entries`);
          out.push({ name: baseName(abs), path: abs, ...info });
        } while (r.remaining > 0);
        return false;
      },
      fail: reject,
    });
  });
}

/** A pull queue: producers push, one consumer awaits; end() may carry an error. */
export class Queue<V> {
  private items: V[] = [];
  private waiter: ((r: IteratorResult<V> | Error) => void) | undefined;
  private ended: Error | true | undefined;

  get size(): number {
    return this.items.length;
  }
  push(v: V): void {
    if (this.ended) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: v, done: false });
    } else this.items.push(v);
  }
  end(err?: Error): void {
    if (this.ended) return;
    this.ended = err ?? true;
    const w = this.waiter;
    this.waiter = undefined;
    w?.(err ?? { value: undefined, done: true });
  }
  async next(): Promise<IteratorResult<V>> {
    const v = this.items.shift();
    if (v !== undefined) return { value: v, done: false };
    if (this.ended) {
      if (this.ended instanceof Error) throw this.ended;
      return { value: undefined, done: true };
    }
    const r = await new Promise<IteratorResult<V> | Error>((resolve) => (this.waiter = resolve));
    if (r instanceof Error) throw r;
    return r;
  }
}

/**
 * With `host` the agent answers FD first for a file big enough to be worth it (it then sends
 * nothing until given credit again): the host reads the file itself when it may
 * (host-files.ts), else gives the credit back and takes CHUNKs as usual.
 */
export async function* readFile(
  conn: Connection,
  path: string,
  user: FsUser,
  host?: HostFiles,
): AsyncGenerator<Buffer> {
  const w = userHead(user).u32(READ_WINDOW).str(checkPath(path));
  if (host) w.flags |= F.DIRECT;
  const what = `read ${path}`;
  const q = new Queue<Buffer>();
  let credit = READ_WINDOW; // what the agent may still send: a bigger CHUNK is a violation
  let open = true;
  let first = true;
  let agentFd: number | undefined;
  const id = conn.open(T.READ, w, {
    what,
    frame: (t, r) => {
      if (first && host && t === R.FD) {
        first = false;
        agentFd = r.u32();
        r.done();
        credit = 0; // the agent keeps the rest for us: it sends CHUNKs only after CREDIT now
        q.push(Buffer.alloc(0)); // wakes the reader: an empty chunk is never data
        return false;
      }
      first = false;
      if (t === R.OK) {
        r.done();
        open = false;
        q.end();
        return true;
      }
      const data = r.rest();
      if (t !== R.CHUNK || data.length < 1 || data.length > Math.min(credit, MAX_CHUNK)) {
        throw new ProtocolError(`${what}: bad CHUNK`);
      }
      credit -= data.length;
      // A subarray of a buffer the decoder made for this data alone (never reused): no copy.
      q.push(data);
      return false;
    },
    fail: (err) => {
      open = false;
      q.end(err);
    },
  });
  let owed = 0;
  try {
    for (;;) {
      const r = await q.next();
      if (r.done) return;
      if (r.value.length === 0 && agentFd !== undefined) {
        const mine = host?.open(agentFd, 'r');
        if (mine !== undefined) {
          yield* readAll(mine, bulkBuffer, what);
          return;
        }
        credit = READ_WINDOW;
        conn.send(T.CREDIT, id, new Writer().u32(READ_WINDOW));
        continue;
      }
      owed += r.value.length;
      if (open && owed >= CREDIT_BATCH) {
        // Credit goes back only as the consumer takes chunks: memory stays under the window.
        credit += owed;
        conn.send(T.CREDIT, id, new Writer().u32(owed));
        owed = 0;
      }
      yield r.value;
    }
  } finally {
    if (open && !conn.isClosed) conn.send(T.CANCEL, id, new Writer());
  }
}

/** Below this a Buffer goes through the agent: a descriptor's round trip would cost more. */
const DIRECT_MIN = 1 << 20;

/**
 * With `host` (and a stream or a big buffer) the agent is asked for its descriptor first: the
 * host writes the file itself when it may (host-files.ts), else sends WDATA as usual.
 */
export async function writeFile(
  conn: Connection,
  path: string,
  data: Buffer | AsyncIterable<Buffer>,
  user: FsUser,
  host?: HostFiles,
): Promise<FileInfo> {
  const w = userHead(user).str(checkPath(path));
  const direct = host && (!Buffer.isBuffer(data) || data.length >= DIRECT_MIN) ? host : undefined;
  if (direct) w.flags |= F.DIRECT;
  const what = `write ${path}`;
  let failed: CoveError | undefined;
  let settle: { resolve: (v: FileInfo) => void; reject: (e: CoveError) => void } | undefined;
  const done = new Promise<FileInfo>((resolve, reject) => (settle = { resolve, reject }));
  done.catch(() => {}); // observed below; an early ERR must not be an unhandled rejection
  const agentFd = new Queue<number>();
  let fdSeen = !direct;
  const id = conn.open(T.WRITE, w, {
    what,
    frame: (t, r) => {
      if (!fdSeen && t === R.FD) {
        fdSeen = true;
        agentFd.push(r.u32());
        r.done();
        return false;
      }
      if (t !== R.OK || !fdSeen) throw new ProtocolError(`${what}: unexpected frame`);
      settle?.resolve(entryAt(r, path));
      return true;
    },
    fail: (err) => {
      failed = err;
      settle?.reject(err);
      agentFd.end(err);
    },
  });
  const chunks: Iterable<Buffer> | AsyncIterable<Buffer> = Buffer.isBuffer(data) ? [data] : data;
  try {
    const mine = direct ? direct.open((await agentFd.next()).value as number, 'w') : undefined;
    if (mine !== undefined) {
      await writeAll(mine, chunks, what, () => failed);
      conn.send(T.WEND, id, new Writer());
      return await done;
    }
    for await (const buf of chunks) {
      for (let off = 0; off < buf.length && !failed; off += MAX_CHUNK) {
        if (!conn.send(T.WDATA, id, new Writer().bytes(buf.subarray(off, off + MAX_CHUNK))))
          await conn.drain();
      }
      if (failed) break;
    }
  } catch (err) {
    if (!failed && !conn.isClosed) conn.send(T.CANCEL, id, new Writer());
    throw err;
  }
  if (!failed) conn.send(T.WEND, id, new Writer());
  return done;
}

export function watch(conn: Connection, path: string, recursive: boolean, user: FsUser): Promise<Watch> {
  const w = userHead(user)
    .u8(recursive ? 1 : 0)
    .str(checkPath(path));
  const what = `watch ${path}`;
  const q = new Queue<WatchEvent>();
  let started = false;
  let open = true;
  let closing: Promise<void> | undefined;
  let ended: () => void = () => {};
  const endedP = new Promise<void>((resolve) => (ended = resolve));
  return new Promise((resolve, reject) => {
    const id = conn.open(T.WATCH, w, {
      what,
      frame: (t, r) => {
        if (!started) {
          if (t !== R.STARTED) throw new ProtocolError(`${what}: expected STARTED`);
          r.done();
          started = true;
          resolve({ events: { [Symbol.asyncIterator]: () => ({ next: () => q.next() }) }, close });
          return false;
        }
        if (t === R.OK) {
          r.done();
          open = false;
          q.end();
          ended();
          return true;
        }
        const type = t === R.EVENT ? EVENT_TYPES[r.u8()] : undefined;
        if (!type) throw new ProtocolError(`${what}: bad EVENT`);
        const rel = checkRelative(r.str(MAX_PATH));
        r.done();
        q.push({ type, path: rel });
        if (q.size > MAX_QUEUED_EVENTS) {
          q.end(new CoveError('resource_exhausted', `${what}: more than ${MAX_QUEUED_EVENTS} unread events`));
          void close();
        }
        return false;
      },
      fail: (err) => {
        open = false;
        if (!started) reject(err);
        q.end(err);
        ended();
      },
    });
    const close = (): Promise<void> => {
      if (!closing) {
        if (open && !conn.isClosed) conn.send(T.CANCEL, id, new Writer());
        else ended();
        q.end();
        closing = endedP;
      }
      return closing;
    };
  });
}
