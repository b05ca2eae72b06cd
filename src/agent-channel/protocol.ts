/**
 * Frame layout and payload codecs of spec/agent-protocol.md. Everything read here comes from
 * the sandbox: every length is checked against the frame and a bound before it is used, and a
 * violation throws ProtocolError, which makes the client drop the connection.
 */
import type { FileInfo } from './types.ts';

export const HDR_LEN = 12;
export const MAX_FRAME = 128 * 1024;
export const MAX_CHUNK = 64 * 1024;
export const MAX_PATH = 4095;
export const PROTO_VERSION = 1;

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
    const h = Buffer.alloc(HDR_LEN);
    h.writeUInt32LE(this.length, 0);
    h.writeUInt8(type, 4);
    h.writeUInt8(this.flags, 5);
    h.writeUInt32LE(id >>> 0, 8);
    return Buffer.concat([h, ...this.parts], this.length);
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

/** Splits a byte stream into frames; holds at most one frame plus the chunk being pushed. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.size += chunk.length;
    const out: Frame[] = [];
    for (;;) {
      if (this.size < HDR_LEN) return out;
      if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.size)];
      const buf = this.chunks[0];
      if (!buf) return out;
      const len = buf.readUInt32LE(0);
      if (len < HDR_LEN || len > MAX_FRAME) throw new ProtocolError(`frame length ${len} out of bounds`);
      if (buf[5] !== 0 || buf[6] !== 0 || buf[7] !== 0) throw new ProtocolError('reserved header bytes set');
      if (this.size < len) return out;
      out.push({ type: buf.readUInt8(4), id: buf.readUInt32LE(8), payload: buf.subarray(HDR_LEN, len) });
      const rest = buf.subarray(len);
      this.chunks = rest.length ? [rest] : [];
      this.size = rest.length;
    }
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
