/**
 * One framed connection to an agent: id allocation, the table of open streams, dispatch of
 * agent frames to them, and the single failure path. Any frame that does not fit the protocol
 * (unknown id, a type the stream does not expect, a bad length) ends the connection and every
 * open stream fails with CoveError('unavailable'): a sandbox can only hurt itself.
 */
import type { Socket } from 'node:net';
import { CoveError, codeForErrno } from '../core/errors.ts';
import { FrameDecoder, ProtocolError, R, Reader, type Writer } from './protocol.ts';

export interface StreamHandler {
  /** Used in error messages: "stat /etc/x". */
  readonly what: string;
  /** Handles a non-ERR frame; returns true when it was the stream's last. Throws ProtocolError. */
  frame(type: number, r: Reader): boolean;
  /** The stream ended with an error: the agent's ERR, or the connection ended. Called once. */
  fail(err: CoveError): void;
}

/** Frames at least this long are written without first being copied into one buffer. */
const BIG_FRAME = 16 * 1024;

const ERRNO_NAME = /^E[A-Z0-9]{1,31}$/;

function errorFrom(r: Reader, what: string): CoveError {
  r.u32();
  const name = r.str(32);
  const context = r.str(256);
  r.done();
  if (!ERRNO_NAME.test(name)) throw new ProtocolError('bad errno name');
  // E2BIG is the agent's "over a listing/reply bound"; codeForErrno leaves it internal.
  const code = name === 'E2BIG' ? 'resource_exhausted' : codeForErrno(name);
  return new CoveError(
    code,
    `${what}: ${name}${context ? ` (${context.replace(/[^\x20-\x7e]/g, '?')})` : ''}`,
  );
}

export class Connection {
  private readonly socket: Socket;
  private readonly streams = new Map<number, StreamHandler>();
  private readonly decoder = new FrameDecoder();
  private lastId = 0;
  private failure: CoveError | undefined;
  readonly closed: Promise<void>;

  constructor(socket: Socket) {
    this.socket = socket;
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {}); // 'close' follows and carries the outcome
    socket.once('close', () => this.fail(new CoveError('unavailable', 'agent connection closed')));
  }

  get isClosed(): boolean {
    return this.failure !== undefined;
  }

  /** Registers a stream and sends its opening frame; returns the id. */
  open(type: number, payload: Writer, handler: StreamHandler): number {
    if (this.failure) throw this.failure;
    const id = ++this.lastId;
    this.streams.set(id, handler);
    this.send(type, id, payload);
    return id;
  }

  /** Sends a frame that belongs to an open stream (CREDIT, WDATA, WEND, CANCEL). */
  send(type: number, id: number, payload: Writer): boolean {
    if (this.failure) throw this.failure;
    if (payload.length < BIG_FRAME) return this.socket.write(payload.frame(type, id));
    // A file's WDATA: header and data go out in one writev, the data never copied into a
    // frame buffer (an allocation as large as the data, per chunk, is what costs here).
    const parts = payload.frameParts(type, id);
    this.socket.cork();
    let ok = true;
    for (const p of parts) ok = this.socket.write(p);
    this.socket.uncork();
    return ok;
  }

  /** Resolves when the socket can take more (or rejects once the connection is gone). */
  drain(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (!this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        if (this.failure) reject(this.failure);
        else resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** A request answered by one OK (payload handed to parse) or ERR. */
  unary<V>(type: number, payload: Writer, what: string, parse: (r: Reader) => V): Promise<V> {
    return new Promise((resolve, reject) => {
      this.open(type, payload, {
        what,
        frame: (t, r) => {
          if (t !== R.OK) throw new ProtocolError(`unexpected frame 0x${t.toString(16)} for ${what}`);
          resolve(parse(r));
          return true;
        },
        fail: reject,
      });
    });
  }

  /** Ends the connection; every open stream fails with 'unavailable'. */
  fail(err: CoveError): void {
    if (this.failure) return;
    this.failure = err;
    this.socket.destroy();
    const streams = [...this.streams.values()];
    this.streams.clear();
    for (const s of streams) s.fail(err);
  }

  private onData(chunk: Buffer): void {
    if (this.failure) return;
    try {
      for (const f of this.decoder.push(chunk)) {
        const s = this.streams.get(f.id);
        if (!s) throw new ProtocolError(`frame 0x${f.type.toString(16)} on unknown stream ${f.id}`);
        const r = new Reader(f.payload);
        if (f.type === R.ERR) {
          const err = errorFrom(r, s.what); // may throw: the stream must still be open then
          this.streams.delete(f.id);
          s.fail(err);
        } else if (s.frame(f.type, r)) {
          this.streams.delete(f.id);
        }
        if (this.failure) return;
      }
    } catch (err) {
      // Anything thrown while decoding agent output (not only ProtocolError) ends the connection.
      const why = err instanceof Error ? err.message : String(err);
      this.fail(new CoveError('unavailable', `agent protocol violation: ${why}`, { cause: err }));
    }
  }
}
