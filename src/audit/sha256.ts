/**
 * sha256 of an upload, computed on a thread of its own. The audit trail records each written
 * file's hash before the write is answered (agent.ts); hashed on the server's event loop it
 * was a fifth of the CPU an upload costs there, so at ~1 GB/s it capped what one connection
 * can move (docs/benchmarks.md). Here the event loop only copies each chunk into a block of
 * shared memory (a memcpy, ~10× cheaper than the hash) and hands full blocks to the worker,
 * which hashes them in order while the bytes travel on to the sandbox: the digest is ready
 * about when the last byte is written. Uploads that fit one block (most files) never reach
 * the worker: they are hashed here at digest time, as before.
 */
import { createHash } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { CoveError } from '../core/errors.ts';
import type { FromWorker, ToWorker } from './sha256-worker.ts';

/** A block handed to the worker at once: big enough that messages cost nothing beside the hash. */
const BLOCK = 1 << 20;
/** Blocks of one stream at the worker at a time: past that, update() waits (backpressure). */
const IN_FLIGHT = 4;
/** Free blocks kept for the next uploads (the rest are left to the GC). */
const KEEP = 16;
/**
 * A block's bytes start at the source's offset modulo this, so that the copy in update() keeps
 * source and destination equally aligned: a copy off by a few bytes measured ~2× the CPU
 * (64 MiB in 64 KiB chunks: ~60 against ~30 ms). A big chunk that would land misaligned in
 * the current block closes it early and starts its own, a few times per stream at most: a
 * multipart part's bytes follow its headers at any offset, once, then come in aligned chunks.
 */
const ALIGN = 64;
const REALIGN_MIN = 16 << 10;
const MAX_REALIGNS = 4;

interface Waiting {
  inFlight: number;
  wake?: () => void;
  done?: { resolve(hex: string): void; reject(err: Error): void };
}

let thread: { worker: Worker; streams: Map<number, Waiting> } | undefined;
/** The worker could not start here (it died before its first reply): hash on the caller's thread. */
let unavailable = false;
let lastId = 0;
const free: SharedArrayBuffer[] = [];

function release(block: SharedArrayBuffer): void {
  if (free.length < KEEP) free.push(block);
}

function hashThread(): NonNullable<typeof thread> {
  if (thread) return thread;
  const worker = new Worker(new URL('./sha256-worker.ts', import.meta.url));
  const streams = new Map<number, Waiting>();
  const t = { worker, streams };
  let answered = false;
  worker.on('message', (m: FromWorker) => {
    answered = true;
    const s = streams.get(m.id);
    if (m.op === 'free') {
      release(m.block);
      if (!s) return;
      s.inFlight--;
      const wake = s.wake;
      s.wake = undefined;
      wake?.();
    } else {
      forget(t, m.id);
      s?.done?.resolve(m.hex);
    }
  });
  const fail = (err: Error): void => {
    if (thread === t) thread = undefined;
    if (!answered) unavailable = true;
    const lost = new CoveError('internal', `upload hashing failed: ${err.message}`, { cause: err });
    for (const s of streams.values()) {
      s.done?.reject(lost);
      s.wake?.();
    }
    streams.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`hash worker exited (${code})`)));
  worker.unref(); // after the listeners (a 'message' listener refs it): idle, it keeps no process alive
  thread = t;
  return t;
}

/** Streams at the worker keep it referenced (its replies must arrive); none left, it is let go. */
function track(t: NonNullable<typeof thread>, id: number, s: Waiting): void {
  if (t.streams.size === 0) t.worker.ref();
  t.streams.set(id, s);
}

function forget(t: NonNullable<typeof thread>, id: number): boolean {
  const had = t.streams.delete(id);
  if (had && t.streams.size === 0) t.worker.unref();
  return had;
}

export interface ContentHash {
  /** Bytes seen so far. */
  readonly size: number;
  /** Takes a chunk (copied: the caller may reuse it). A promise means: wait before the next. */
  update(chunk: Uint8Array): Promise<void> | undefined;
  /** The hex sha256 of everything given; the hash is spent. */
  digest(): Promise<string>;
  /** Forgets the stream (a failed write): no digest will be asked for. */
  abort(): void;
}

/** The same on the caller's thread: where no worker can start. */
function inlineHash(): ContentHash {
  const h = createHash('sha256');
  let size = 0;
  return {
    get size() {
      return size;
    },
    update(chunk) {
      h.update(chunk);
      size += chunk.length;
      return undefined;
    },
    digest: () => Promise.resolve(h.digest('hex')),
    abort() {},
  };
}

/** A streaming sha256 whose bulk runs on the hash thread (see the top of this file). */
export function contentHash(): ContentHash {
  if (unavailable) return inlineHash();
  const id = ++lastId;
  let block: SharedArrayBuffer | undefined;
  let view: Uint8Array | undefined;
  let fill = 0;
  let start = 0; // where the block's bytes begin (see ALIGN)
  let realigns = 0;
  let size = 0;
  let state: Waiting | undefined; // set once a block went to the worker
  let owner: ReturnType<typeof hashThread> | undefined; // that worker: a later one lacks the start
  let ended = false;

  /** The worker that holds this stream's hash so far; throws if it is gone. */
  const worker = (): Worker => {
    if (!owner || thread !== owner || !owner.streams.has(id)) throw new Error('hash worker failed');
    return owner.worker;
  };
  const send = (): void => {
    if (!state) {
      state = { inFlight: 0 };
      owner = hashThread();
      track(owner, id, state);
    }
    state.inFlight++;
    worker().postMessage({ op: 'update', id, block: block!, start, length: fill - start } satisfies ToWorker);
    block = view = undefined;
    fill = start = 0;
  };

  return {
    get size() {
      return size;
    },
    update(chunk) {
      if (ended) throw new Error('content hash already ended');
      size += chunk.length;
      for (let off = 0; off < chunk.length;) {
        if (
          view &&
          realigns < MAX_REALIGNS &&
          chunk.length - off >= REALIGN_MIN &&
          (fill - chunk.byteOffset - off) % ALIGN !== 0
        ) {
          realigns++;
          send();
        }
        if (!view) {
          block = free.pop() ?? new SharedArrayBuffer(BLOCK);
          view = new Uint8Array(block);
          fill = start = (chunk.byteOffset + off) % ALIGN;
        }
        const n = Math.min(chunk.length - off, BLOCK - fill);
        view.set(chunk.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === BLOCK) send();
      }
      const s = state;
      if (!s || s.inFlight < IN_FLIGHT) return undefined;
      if (owner?.streams.get(id) !== s) return Promise.reject(new Error('hash worker failed'));
      return new Promise<void>((resolve, reject) => {
        s.wake = () => (owner?.streams.get(id) === s ? resolve() : reject(new Error('hash worker failed')));
      });
    },
    digest() {
      if (ended) return Promise.reject(new Error('content hash already ended'));
      ended = true;
      if (!state) {
        // Never reached the worker: one block at most, hashed here.
        const hex = createHash('sha256')
          .update(view ? view.subarray(start, fill) : new Uint8Array(0))
          .digest('hex');
        if (block) release(block);
        block = view = undefined;
        return Promise.resolve(hex);
      }
      const s = state;
      try {
        if (fill > 0) send();
        const w = worker();
        return new Promise<string>((resolve, reject) => {
          s.done = { resolve, reject };
          w.postMessage({ op: 'digest', id } satisfies ToWorker);
        });
      } catch (err) {
        return Promise.reject(err instanceof Error ? err : new Error(String(err)));
      }
    },
    abort() {
      if (ended) return;
      ended = true;
      if (block) release(block);
      block = view = undefined;
      if (owner && forget(owner, id) && thread === owner)
        owner.worker.postMessage({ op: 'drop', id } satisfies ToWorker);
    },
  };
}
