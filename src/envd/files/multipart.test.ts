import { randomBytes } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { HttpError } from './call.ts';
import { fileParts } from './multipart.ts';

const BOUNDARY = '----formdata-undici-0123456789';
const headers = { 'content-type': `multipart/form-data; boundary=${BOUNDARY}` };

interface Part {
  name: string;
  filename?: string;
  data: Buffer | string;
  headers?: string;
}

function body(parts: Part[], close = true): Buffer {
  const out: Buffer[] = [];
  for (const p of parts) {
    const fn = p.filename === undefined ? '' : `; filename="${p.filename}"`;
    out.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${p.name}"${fn}\r\n`));
    out.push(Buffer.from(`${p.headers ?? 'Content-Type: application/octet-stream\r\n'}\r\n`));
    out.push(Buffer.from(p.data), Buffer.from('\r\n'));
  }
  if (close) out.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(out);
}

/** The body as a stream of the given chunks (each copied, as a socket hands out fresh ones). */
function source(buf: Buffer, cuts: number[]): Readable {
  const chunks: Buffer[] = [];
  let at = 0;
  for (const c of [...cuts, buf.length]) {
    chunks.push(Buffer.from(buf.subarray(at, c)));
    at = c;
  }
  return Readable.from(
    chunks.filter((c) => c.length > 0),
    { objectMode: false },
  );
}

/** Every part, its bytes read slowly (a tick between chunks) so that queued chunks sit a while. */
async function collect(src: Readable, h: Record<string, string> = headers) {
  const got: { filename: string; data: Buffer }[] = [];
  for await (const part of fileParts(h, src)) {
    const bufs: Buffer[] = [];
    if (Buffer.isBuffer(part.data)) bufs.push(part.data);
    else
      for await (const c of part.data) {
        bufs.push(Buffer.from(c));
        await new Promise(setImmediate);
      }
    got.push({ filename: part.filename, data: Buffer.concat(bufs) });
  }
  return got;
}

describe('fileParts', () => {
  // Bytes that look like the closing delimiter, and every prefix of it, near chunk edges.
  const tricky = Buffer.concat([
    Buffer.from(`\r\n--${BOUNDARY.slice(0, -1)}x\r\n-\r\n--\r\n--${BOUNDARY.slice(0, 5)}\r`),
    randomBytes(64),
    Buffer.from(`--${BOUNDARY}\r\n--${BOUNDARY}`.slice(0, -1)),
    Buffer.from('\r\n--\r'),
  ]);

  it('takes one file part whole when the body is cut at every position', async () => {
    const buf = body([{ name: 'file', filename: '/home/user/ü dir/a.bin', data: tricky }]);
    for (let cut = 1; cut < buf.length; cut++) {
      const got = await collect(source(buf, [cut]));
      expect(got).toHaveLength(1);
      expect(got[0]!.filename).toBe('/home/user/ü dir/a.bin');
      expect(got[0]!.data.equals(tricky), `cut at ${cut}`).toBe(true);
    }
  });

  it('takes a body cut into pieces of every small size, and in single bytes', async () => {
    const buf = body([
      { name: 'file', filename: 'a', data: tricky },
      { name: 'file', filename: 'b', data: Buffer.alloc(0) },
      { name: 'file', filename: 'c', data: tricky.subarray(3) },
    ]);
    for (const size of [1, 2, 3, 5, 7, 13, 31, 47, 64]) {
      const cuts = Array.from({ length: Math.ceil(buf.length / size) }, (_, i) => i * size).slice(1);
      const got = await collect(source(buf, cuts));
      expect(got.map((g) => g.filename)).toEqual(['a', 'b', 'c']);
      expect(got[0]!.data.equals(tricky)).toBe(true);
      expect(got[1]!.data.length).toBe(0);
      expect(got[2]!.data.equals(tricky.subarray(3))).toBe(true);
    }
  });

  it('keeps big parts whole and in order', async () => {
    const a = randomBytes(3 << 20);
    const b = randomBytes((1 << 20) + 17);
    const buf = body([
      { name: 'file', filename: 'a', data: a },
      { name: 'file', filename: 'b', data: b },
    ]);
    const cuts = Array.from({ length: Math.floor(buf.length / 65536) }, (_, i) => (i + 1) * 65536 - 3);
    const got = await collect(source(buf, cuts));
    expect(got.map((g) => g.filename)).toEqual(['a', 'b']);
    expect(got[0]!.data.equals(a) && got[1]!.data.equals(b)).toBe(true);
  });

  it('skips other parts, and takes a `file` field without filename as its bytes', async () => {
    const latin = Buffer.from([0x61, 0xe9, 0xff, 0x00, 0x0d, 0x0a]);
    const buf = body([
      { name: 'other', filename: 'skipped', data: 'no' },
      { name: 'note', data: 'a field', headers: '' },
      { name: 'file', data: latin, headers: '' },
      { name: 'file', data: 'typed', headers: 'Content-Type: application/octet-stream\r\n' },
      { name: 'file', filename: 'kept', data: 'yes' },
    ]);
    const got = await collect(source(buf, [10, 200]));
    expect(got.map((g) => [g.filename, g.data.toString('latin1')])).toEqual([
      ['', latin.toString('latin1')],
      ['', 'typed'],
      ['kept', 'yes'],
    ]);
  });

  it('takes many small parts one at a time', async () => {
    const parts = Array.from({ length: 500 }, (_, i) => ({ name: 'file', filename: `f${i}`, data: `${i}` }));
    const got = await collect(source(body(parts), [1000, 5000]));
    expect(got.map((g) => g.data.toString())).toEqual(parts.map((p) => p.data));
  });

  it('refuses a field over 1 MiB, a body without boundary and a missing Content-Type', async () => {
    const big = body([{ name: 'file', data: Buffer.alloc((1 << 20) + 1, 'a'), headers: '' }]);
    await expect(collect(source(big, []))).rejects.toMatchObject({ status: 400 });
    const noBoundary = { 'content-type': 'multipart/form-data' };
    await expect(collect(source(big, []), noBoundary)).rejects.toBeInstanceOf(HttpError);
    await expect(collect(source(big, []), {})).rejects.toMatchObject({ status: 400 });
  });

  it('fails a body that ends in the middle of a part, or before any', async () => {
    const cutShort = body([{ name: 'file', filename: 'a', data: randomBytes(200_000) }], false);
    for (const end of [cutShort.length, 150_000, 60, 10]) {
      await expect(collect(source(cutShort.subarray(0, end), [40_000]))).rejects.toMatchObject({
        status: 400,
      });
    }
  });

  it("keeps a part's header within 80 KiB and fails one that never ends", async () => {
    const head = `--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n`;
    // Past 80 KiB the header's bytes are dropped unread (memory stays bounded) and the part
    // is taken, as envd's Go reader takes headers up to 10 MiB.
    const long = Buffer.from(`${head}X-Pad: ${'p'.repeat(200_000)}\r\n\r\nbody\r\n--${BOUNDARY}--`);
    expect(await collect(source(long, [1000, 100_000]))).toEqual([
      { filename: 'a', data: Buffer.from('body') },
    ]);
    const endless = Buffer.from(`${head}X-Pad: ${'p'.repeat(3 << 20)}`);
    await expect(collect(source(endless, [1000, 100_000]))).rejects.toMatchObject({ status: 400 });
  });

  it('ends the part being read with the error of a failing body', async () => {
    const src = new PassThrough();
    const parts = fileParts(headers, src);
    src.write(body([{ name: 'file', filename: 'a', data: randomBytes(1000) }], false).subarray(0, 500));
    const first = await parts.next();
    const data = (first.value as { data: AsyncIterable<Buffer> }).data;
    setTimeout(() => src.destroy(new Error('client went away')), 20);
    await expect(
      (async () => {
        for await (const c of data) void c;
      })(),
    ).rejects.toThrow(/client went away/);
    await expect(parts.next()).rejects.toThrow(/client went away/);
  });

  it('reads no further ahead than a few hundred KiB while a part is not taken', async () => {
    const whole = body([{ name: 'file', filename: 'a', data: randomBytes(16 << 20) }]);
    let handed = 0;
    let at = 0;
    const src = new Readable({
      read() {
        const c = whole.subarray(at, at + 65536);
        at += c.length;
        handed += c.length;
        this.push(c.length ? c : null);
      },
    });
    const parts = fileParts(headers, src);
    const part = (await parts.next()).value as { data: AsyncIterator<Buffer> };
    let n = ((await part.data.next()).value as Buffer).length;
    await sleep(100);
    // The source's, the parser's and the queue's buffers; not the 16 MiB.
    expect(handed).toBeLessThan(2 << 20);
    for (let r = await part.data.next(); !r.done; r = await part.data.next()) n += r.value.length;
    expect(handed).toBe(whole.length);
    expect(n).toBe(16 << 20);
    expect((await parts.next()).done).toBe(true);
  });

  it('goes on to the next part when a reader stops early', async () => {
    const buf = body([
      { name: 'file', filename: 'a', data: randomBytes(1 << 20) },
      { name: 'file', filename: 'b', data: 'second' },
    ]);
    const names: string[] = [];
    for await (const part of fileParts(headers, source(buf, [70_000, 300_000]))) {
      names.push(part.filename);
      if (!Buffer.isBuffer(part.data)) for await (const c of part.data) if (c.length) break;
    }
    expect(names).toEqual(['a', 'b']);
  });
});
