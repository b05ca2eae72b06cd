import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FrameDecoder, MAX_FRAME, ProtocolError, R, Writer } from './protocol.ts';

describe('FrameDecoder', () => {
  const sizes = [0, 1, 11, 12, 100, 5000, 20000, 65536, 65537, MAX_FRAME - 12];
  const frames = sizes.map((n, i) => ({ id: i + 1, data: randomBytes(n) }));
  const stream = Buffer.concat(frames.map((f) => new Writer().bytes(f.data).frame(R.CHUNK, f.id)));

  // The client reads every socket into one shared buffer: what is pushed is only borrowed.
  it.each([1, 3, 12, 13, 4096, 65548, 262144])('reassembles frames from borrowed %i-byte reads', (step) => {
    const d = new FrameDecoder();
    const got: { id: number; payload: Buffer }[] = [];
    const scratch = Buffer.alloc(step);
    for (let off = 0; off < stream.length; off += step) {
      const n = stream.copy(scratch, 0, off, off + step);
      got.push(...d.push(scratch.subarray(0, n)));
      scratch.fill(0xaa); // the next read overwrites it
    }
    expect(got.map((f) => f.id)).toEqual(frames.map((f) => f.id));
    got.forEach((f, i) => expect(f.payload.equals(frames[i]!.data)).toBe(true));
  });

  it('rejects an oversize header before buffering anything', () => {
    const h = Buffer.alloc(12);
    h.writeUInt32LE(MAX_FRAME + 1, 0);
    expect(() => new FrameDecoder().push(h.subarray(0, 5))).not.toThrow();
    const d = new FrameDecoder();
    d.push(h.subarray(0, 5));
    expect(() => d.push(h.subarray(5))).toThrow(ProtocolError);
  });
});
