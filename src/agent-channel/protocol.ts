/**
 * Frame layout and payload codecs of spec/agent-protocol.md. Everything read here comes from
 * the sandbox: every length is checked against the frame and a bound before it is used, and a
 * violation throws ProtocolError, which makes the client drop the connection.
 */
import { releaseBulk } from './host-files.ts';
import type { FileInfo } from './types.ts';

export const HDR_LEN = 12;
export const MAX_FRAME = 128 * 1024;
export const MAX_CHUNK = 64 * 1024;
export const MAX_PATH = 4095;
/**
 * The agent's protocol version (its AUTH answer). 2 is 1 plus DIRECT/FD (spec §5): an agent
 * of version 1 (a sandbox started before an upgrade of Cove) is still served, without them.
 */
export const PROTO_VERSION = 2;
export const PROTO_OLDEST = 1;

export const T = {
  AUTH: 0x01,
  PING: 0x02,
  CANCEL: 0x03,
  SPAWN: 0x10,
  STDIN: 0x11,
  CLOSE_STDIN: 0x12,
  SIGNAL: 0x13,
  RESIZE: 0x14,
  LIST_PROCS: 0x15,
  ATTACH: 0x16,
  STAT: 0x20,
  LISTDIR: 0x21,
  MKDIR: 0x22,
  RENAME: 0x23,
  REMOVE: 0x24,
  READ: 0x25,
  CREDIT: 0x26,
  WRITE: 0x27,
  WDATA: 0x28,
  WEND: 0x29,
  WATCH: 0x2a,
  SETMETA: 0x2b,
} as const;

/** Header flags of a request (spec §1). */
export const F = {
  /** A file request acts with the agent's file capabilities; what it creates is the user's. */
  ELEVATED: 0x01,
  /** READ/WRITE: the agent answers FD first, for a host that moves the bytes itself (host-files.ts). */
  DIRECT: 0x02,
} as const;

/** Bounds of E2B file metadata (spec §4.2): the agent enforces the same. */
export const META = { PREFIX_LEN: 9, MAX_KEY: 246, MAX_SET: 4096, MAX_PAIRS: 512 } as const;

export const R = {
  OK: 0x80,
  ERR: 0x81,
  STARTED: 0x82,
  ENTRIES: 0x83,
  PROC: 0x84,
  DATA: 0x85,
  EXIT: 0x86,
  CHUNK: 0x87,
  EVENT: 0x88,
  FD: 0x89,
} as const;

export class ProtocolError extends Error {
  override name = 'ProtocolError';
}

/** Builds one frame. */
export class Writer {
  private parts: Buffer[] = [];
  private size = 0;
  /** Header flags (F); 0 unless the request asks for more. */
  flags = 0;

  private push(b: Buffer): this {
    this.parts.push(b);
    this.size += b.length;
    return this;
  }
  u8(v: number): this {
    return this.push(Buffer.from([v]));
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    return this.push(b);
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    return this.push(b);
  }
  bytes(b: Buffer): this {
    return this.push(b);
  }
  str(s: string | Buffer): this {
    const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
    return this.u32(b.length).push(b);
  }
  get length(): number {
    return HDR_LEN + this.size;
  }
  frame(type: number, id: number): Buffer {
    return Buffer.concat(this.frameParts(type, id), this.length);
  }
  /** The frame as its header followed by the payload's pieces, uncopied (for a writev). */
  frameParts(type: number, id: number): Buffer[] {
    const h = Buffer.alloc(HDR_LEN);
    h.writeUInt32LE(this.length, 0);
    h.writeUInt8(type, 4);
    h.writeUInt8(this.flags, 5);
    h.writeUInt32LE(id >>> 0, 8);
    return [h, ...this.parts];
  }
}

/** Reads one payload; every accessor throws ProtocolError instead of reading past the end. */
export class Reader {
  private off = 0;
  private readonly buf: Buffer;
  constructor(buf: Buffer) {
    this.buf = buf;
  }

  private need(n: number): void {
    if (this.buf.length - this.off < n) throw new ProtocolError('payload too short');
  }
  u8(): number {
    this.need(1);
    return this.buf.readUInt8(this.off++);
  }
  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.off);
    this.off += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.off);
    this.off += 4;
    return v;
  }
  i32(): number {
    this.need(4);
    const v = this.buf.readInt32LE(this.off);
    this.off += 4;
    return v;
  }
  u64(): number {
    this.need(8);
    const v = this.buf.readBigUInt64LE(this.off);
    this.off += 8;
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ProtocolError('integer out of range');
    return Number(v);
  }
  i64(): bigint {
    this.need(8);
    const v = this.buf.readBigInt64LE(this.off);
    this.off += 8;
    return v;
  }
  bytes(max: number): Buffer {
    const n = this.u32();
    if (n > max) throw new ProtocolError('string too long');
    this.need(n);
    const b = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return b;
  }
  /** UTF-8 text without NUL (file names may hold other bytes: they decode lossily). */
  str(max: number): string {
    const b = this.bytes(max);
    if (b.includes(0)) throw new ProtocolError('NUL in string');
    return b.toString('utf8');
  }
  rest(): Buffer {
    const b = this.buf.subarray(this.off);
    this.off = this.buf.length;
    return b;
  }
  get remaining(): number {
    return this.buf.length - this.off;
  }
  done(): void {
    if (this.off !== this.buf.length) throw new ProtocolError('trailing bytes in payload');
  }
}

export interface Frame {
  type: number;
  id: number;
  payload: Buffer;
}

/**
 * Buffers for frames that carry a full data chunk (a file's CHUNK, a process's DATA), kept for
 * reuse: a bulk read would otherwise allocate one per 64 KiB, and at transfer rates V8 then
 * runs a full garbage collection every few tens of MiB. Only a consumer that knows a payload
 * is no longer referenced anywhere hands it back (releaseChunk); the others are collected as
 * usual. At most SLOTS_KEPT are kept (4 MiB).
 */
const SLOT = HDR_LEN + 1 + MAX_CHUNK;
const SLOTS_KEPT = 64;
const slots: ArrayBuffer[] = [];
const pooled = new WeakSet<ArrayBuffer>();

function frameBuffer(len: number): Buffer {
  if (len < 16 * 1024 || len > SLOT) return Buffer.allocUnsafe(len);
  let ab = slots.pop();
  if (!ab) {
    ab = new ArrayBuffer(SLOT);
    pooled.add(ab);
  }
  return Buffer.from(ab, 0, len);
}

/**
 * Gives a payload's memory back for the next frame. The caller guarantees that nothing holds
 * the payload (or another view of its frame) any more: e.g. a socket's write callback ran.
 */
export function releaseChunk(b: Buffer): void {
  const ab = b.buffer as ArrayBuffer;
  if (pooled.has(ab) && slots.length < SLOTS_KEPT && !slots.includes(ab)) slots.push(ab);
  else releaseBulk(b);
}

/**
 * Splits a byte stream into frames. The chunks pushed are only borrowed (the client reads the
 * socket into one shared buffer): every payload handed out is a copy the decoder owns, made
 * once — a frame split across reads is assembled in a buffer of its exact length, allocated
 * when its header arrives (bounded by MAX_FRAME), never by concatenating what came so far.
 */
export class FrameDecoder {
  /** Bytes of a header not complete yet. */
  private head = Buffer.alloc(HDR_LEN);
  private headLen = 0;
  /** The frame being assembled (header included) and how much of it is filled. */
  private frame: Buffer | undefined;
  private filled = 0;

  private static check(h: Buffer, off: number): number {
    const len = h.readUInt32LE(off);
    if (len < HDR_LEN || len > MAX_FRAME) throw new ProtocolError(`frame length ${len} out of bounds`);
    if (h[off + 5] !== 0 || h[off + 6] !== 0 || h[off + 7] !== 0)
      throw new ProtocolError('reserved header bytes set');
    return len;
  }

  private static emit(f: Buffer): Frame {
    return { type: f[4]!, id: f.readUInt32LE(8), payload: f.subarray(HDR_LEN) };
  }

  push(chunk: Buffer): Frame[] {
    const out: Frame[] = [];
    let off = 0;
    const end = chunk.length;
    while (off < end) {
      if (this.frame) {
        const n = Math.min(this.frame.length - this.filled, end - off);
        chunk.copy(this.frame, this.filled, off, off + n);
        this.filled += n;
        off += n;
        if (this.filled === this.frame.length) {
          out.push(FrameDecoder.emit(this.frame));
          this.frame = undefined;
        }
        continue;
      }
      if (this.headLen > 0 || end - off < HDR_LEN) {
        const n = Math.min(HDR_LEN - this.headLen, end - off);
        chunk.copy(this.head, this.headLen, off, off + n);
        this.headLen += n;
        off += n;
        if (this.headLen < HDR_LEN) break;
        const len = FrameDecoder.check(this.head, 0);
        this.headLen = 0;
        this.frame = frameBuffer(len);
        this.head.copy(this.frame, 0);
        this.filled = HDR_LEN;
        if (len === HDR_LEN) {
          out.push(FrameDecoder.emit(this.frame));
          this.frame = undefined;
        }
        continue;
      }
      const len = FrameDecoder.check(chunk, off);
      // Copied out whole or started: the chunk is not ours to keep.
      const f = frameBuffer(len);
      const n = Math.min(len, end - off);
      chunk.copy(f, 0, off, off + n);
      off += n;
      if (n === len) out.push(FrameDecoder.emit(f));
      else {
        this.frame = f;
        this.filled = n;
      }
    }
    return out;
  }
}

const TYPES = [undefined, 'file', 'dir', 'symlink', 'other'] as const;

function fileType(v: number, allowNone: boolean): FileInfo['type'] | undefined {
  const t = TYPES[v];
  if (t === undefined && !(allowNone && v === 0)) throw new ProtocolError(`bad file type ${v}`);
  return t;
}

export interface RawEntry {
  info: Omit<FileInfo, 'name' | 'path'>;
  path: string;
}

/** One entry record (spec §4.1). */
export function readEntry(r: Reader): RawEntry {
  const type = fileType(r.u8(), false) ?? 'other';
  const targetType = fileType(r.u8(), true);
  const flags = r.u16();
  if (flags > 1) throw new ProtocolError('unknown entry flags');
  const mode = r.u32();
  const targetMode = r.u32();
  const uid = r.u32();
  const gid = r.u32();
  const size = r.u64();
  const mtimeNs = r.i64();
  const path = r.str(MAX_PATH);
  const target = r.str(MAX_PATH);
  if (mode > 0o7777 || targetMode > 0o7777) throw new ProtocolError('bad mode');
  const info: RawEntry['info'] = { type, size, mode, uid, gid, mtimeMs: Number(mtimeNs / 1_000_000n) };
  if (targetType !== undefined) {
    info.targetType = targetType;
    info.targetMode = targetMode;
  }
  if (type === 'symlink') info.symlinkTarget = target;
  else if (target !== '') throw new ProtocolError('symlink target on a non-symlink');
  if (flags & 1) info.metadata = readMetadata(r);
  return { info, path };
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The metadata block of an entry: set from inside the sandbox too, so pairs that are not
 * UTF-8 are dropped (they could not travel in a protobuf string) rather than failing it. */
function readMetadata(r: Reader): Record<string, string> {
  const n = r.u16();
  if (n === 0 || n > META.MAX_PAIRS) throw new ProtocolError('bad metadata count');
  const pairs: [string, string][] = [];
  for (let i = 0; i < n; i++) {
    const key = r.bytes(META.MAX_KEY);
    const value = r.bytes(META.MAX_SET);
    if (key.length === 0) throw new ProtocolError('empty metadata key');
    try {
      pairs.push([strictUtf8.decode(key), strictUtf8.decode(value)]);
    } catch {
      continue;
    }
  }
  // fromEntries defines own properties: a key such as "__proto__" stays plain data.
  return Object.fromEntries(pairs);
}

/** A relative path from the agent, used to build a host-visible absolute path: no escapes. */
export function checkRelative(rel: string): string {
  const parts = rel.split('/');
  if (rel === '' || rel.length > MAX_PATH || parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw new ProtocolError('bad relative path');
  }
  return rel;
}

export function joinPath(base: string, rel: string): string {
  return base.endsWith('/') ? base + rel : `${base}/${rel}`;
}

export function baseName(path: string): string {
  const trimmed = path.length > 1 ? path.replace(/\/+$/, '') : path;
  return trimmed.slice(trimmed.lastIndexOf('/') + 1) || '/';
}
