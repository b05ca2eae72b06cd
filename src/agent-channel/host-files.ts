/**
 * A file's bytes moved by the host itself, where the agent is a process of this host (crun).
 * The agent still opens the file, as it always does (as the user, the path resolved inside the
 * sandbox, parents made, O_TRUNC), and answers FD with its descriptor's number (header flag
 * DIRECT, spec/agent-protocol.md §3); the host then reads or writes that open file through
 * /proc/<agent>/fd/<n>. That skips two copies and the agent's loop: the body goes from the
 * HTTP request straight into the sandbox's page cache (docs/benchmarks.md has the figures).
 *
 * The sandbox chooses the number, and may have swapped what it names by the time we look, so
 * nothing is trusted: the descriptor is first opened O_PATH (an open with no side effect,
 * whatever it names) and must be a regular file on the sandbox's own root overlay — the
 * superblock Cove mounted at <sandbox>/rootfs on the host, whose device number is unique to it
 * and which nothing inside the sandbox can change. Only then is it reopened, from our own
 * O_PATH descriptor (no race left), for reading or writing. Through an overlay, writes land in
 * that sandbox's upper layer alone. Anything else (a FIFO, /proc or /sys, a volume or any other
 * mount, a vanished process) answers undefined and the bytes go through the agent as before.
 */
import {
  closeSync,
  constants,
  fstatSync,
  openSync,
  readFileSync,
  read,
  statSync,
  statfsSync,
  writev,
} from 'node:fs';
import { CoveError, codeForErrno } from '../core/errors.ts';

/** Linux's O_PATH (the same on x86-64 and arm64); Node does not export it. */
const O_PATH = 0o10000000;
/** statfs f_type of overlayfs. */
const OVERLAYFS_MAGIC = 0x794c7630;
/** Positional reads in flight at once (libuv's thread pool has 4 threads). */
const IN_FLIGHT = 4;

/**
 * Buffers the host reads a sandbox's file into, from a pool of their own (given back through
 * protocol.ts's releaseChunk): bigger than a frame, so that a read costs one trip to libuv's
 * thread pool per 512 KiB.
 */
const BULK = 512 * 1024;
const BULK_KEPT = 8;
const bulkSlots: ArrayBuffer[] = [];
const bulkPooled = new WeakSet<ArrayBuffer>();

export function bulkBuffer(): Buffer {
  let ab = bulkSlots.pop();
  if (!ab) {
    ab = new ArrayBuffer(BULK);
    bulkPooled.add(ab);
  }
  return Buffer.from(ab);
}

export function releaseBulk(b: Buffer): void {
  const ab = b.buffer as ArrayBuffer;
  if (bulkPooled.has(ab) && bulkSlots.length < BULK_KEPT && !bulkSlots.includes(ab)) bulkSlots.push(ab);
}

export interface HostFiles {
  /** A descriptor of the host's own on the agent's open file `fd`, or undefined (see above). */
  open(fd: number, mode: 'r' | 'w'): number | undefined;
}

/** `pidFile`: the agent's host pid (crun's --pid-file); `rootfs`: the sandbox's overlay mount. */
export function hostFiles(opts: { pidFile: string; rootfs: string }): HostFiles {
  return {
    open(fd, mode) {
      if (!Number.isInteger(fd) || fd < 0 || fd > 0x7fffffff) return undefined;
      let path: number | undefined;
      try {
        const root = statSync(opts.rootfs);
        if (statfsSync(opts.rootfs).type !== OVERLAYFS_MAGIC) return undefined; // not (or no longer) mounted
        const pid = Number(readFileSync(opts.pidFile, 'utf8').trim());
        if (!Number.isInteger(pid) || pid <= 1) return undefined;
        path = openSync(`/proc/${pid}/fd/${fd}`, O_PATH);
        const st = fstatSync(path);
        const self = `/proc/self/fd/${path}`;
        if (!st.isFile() || st.dev !== root.dev || statfsSync(self).type !== OVERLAYFS_MAGIC)
          return undefined;
        const file = openSync(self, mode === 'w' ? constants.O_WRONLY : constants.O_RDONLY);
        const again = fstatSync(file);
        if (again.dev !== st.dev || again.ino !== st.ino) {
          closeSync(file);
          return undefined;
        }
        return file;
      } catch {
        return undefined;
      } finally {
        if (path !== undefined) closeSync(path);
      }
    },
  };
}

function failure(err: NodeJS.ErrnoException, what: string): CoveError {
  const name = err.code ?? 'EIO';
  return new CoveError(codeForErrno(name), `${what}: ${name} (host ${err.syscall ?? 'io'})`, { cause: err });
}

/** Bytes waiting for the write under way before the producer is made to wait (backpressure). */
const MAX_QUEUED = 4 << 20;

/** pwritev of all of `bufs` at `at`, resumed after a short write. */
function writeAt(fd: number, bufs: Buffer[], at: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const step = (left: Buffer[], pos: number): void =>
      writev(fd, left, pos, (err, n) => {
        if (err) return reject(err);
        let rest = n;
        while (left.length > 0 && rest >= left[0]!.length) rest -= left.shift()!.length;
        if (left.length === 0) return resolve();
        if (n === 0) return reject(Object.assign(new Error('short write'), { code: 'EIO' }));
        left[0] = left[0]!.subarray(rest);
        step(left, pos + n);
      });
    step(bufs, at);
  });
}

/**
 * Writes `chunks` to `fd` from offset 0 and returns the byte count. One write at a time (two
 * on one file only contend for its lock), each taking every chunk that arrived meanwhile in one
 * pwritev: while the kernel copies, the next chunks come in, and a fast producer costs one trip
 * to the thread pool per few MiB. `stop` is checked between chunks (the agent's stream
 * failed). Closes `fd` whatever happens.
 */
export async function writeAll(
  fd: number,
  chunks: Iterable<Buffer> | AsyncIterable<Buffer>,
  what: string,
  stop: () => CoveError | undefined,
): Promise<number> {
  let written = 0;
  let queued: Buffer[] = [];
  let queuedBytes = 0;
  let error: CoveError | undefined;
  /** The write under way and those it chains while chunks keep arriving; settles, never rejects. */
  let writing: Promise<void> | undefined;
  const drain = async (): Promise<void> => {
    try {
      while (queued.length > 0 && !error) {
        const bufs = queued;
        const n = queuedBytes;
        queued = [];
        queuedBytes = 0;
        await writeAt(fd, bufs, written);
        written += n;
      }
    } catch (err) {
      error = failure(err as NodeJS.ErrnoException, what);
    }
  };
  /** Starts a write of what is queued unless one is under way; the end of each looks again. */
  const kick = (): void => {
    if (writing || queued.length === 0 || error) return;
    writing = drain().then(() => {
      writing = undefined;
      kick(); // chunks that came after its last look
    });
  };
  const settled = async (): Promise<void> => {
    while (writing) await writing;
  };
  try {
    for await (const buf of chunks) {
      const stopped = error ?? stop();
      if (stopped) throw stopped;
      if (buf.length === 0) continue;
      queued.push(buf);
      queuedBytes += buf.length;
      kick();
      if (queuedBytes >= MAX_QUEUED) await settled();
    }
    await settled();
    if (error) throw error;
    return written;
  } finally {
    await settled();
    closeSync(fd);
  }
}

/**
 * The file's bytes from offset 0 to its end, in chunks from `buffer()` (all of one size), a
 * few reads in flight, yielded in order. A short read is the end (what the file held then): a
 * read issued beyond it is dropped, so a file growing meanwhile never yields a gap. Closes
 * `fd` however the consumer stops.
 */
export async function* readAll(fd: number, buffer: () => Buffer, what: string): AsyncGenerator<Buffer> {
  const ahead: Promise<{ data: Buffer; full: boolean }>[] = [];
  let position = 0;
  const get = (buf: Buffer, at: number): Promise<{ data: Buffer; full: boolean }> =>
    new Promise((resolve, reject) =>
      read(fd, buf, 0, buf.length, at, (err, n) =>
        err ? reject(failure(err, what)) : resolve({ data: buf.subarray(0, n), full: n === buf.length }),
      ),
    );
  try {
    for (;;) {
      while (ahead.length < IN_FLIGHT) {
        const buf = buffer();
        const p = get(buf, position);
        p.catch(() => {}); // awaited in order below
        ahead.push(p);
        position += buf.length;
      }
      const { data, full } = await ahead.shift()!;
      if (data.length > 0) yield data;
      if (!full) return;
    }
  } finally {
    await Promise.allSettled(ahead);
    closeSync(fd);
  }
}
