import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { contentHash } from './sha256.ts';

const run = promisify(execFile);
const expected = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Feeds `data` in chunks of `size`, waiting when the hash asks to, as the upload path does. */
async function hashOf(data: Buffer, size: number): Promise<string> {
  const h = contentHash();
  for (let off = 0; off < data.length; off += size) {
    const wait = h.update(data.subarray(off, off + size));
    if (wait) await wait;
  }
  expect(h.size).toBe(data.length);
  return h.digest();
}

describe('contentHash (the audit trail sha256 on its own thread)', () => {
  it('matches createHash for empty, small, exactly-one-block and multi-block streams', async () => {
    for (const n of [0, 1, 65_536, 1 << 20, (1 << 20) + 1, 9 * (1 << 20) + 12_345]) {
      const data = randomBytes(n);
      for (const size of [1000, 65_536, 3 << 20])
        expect(await hashOf(data, size), `${n}/${size}`).toBe(expected(data));
    }
  });

  it('keeps concurrent streams apart, and the caller may reuse its chunk after update', async () => {
    const a = randomBytes(5 << 20);
    const b = randomBytes(7 << 20);
    const ha = contentHash();
    const hb = contentHash();
    const scratch = Buffer.alloc(65_536);
    for (let off = 0; off < b.length; off += 65_536) {
      if (off < a.length) {
        a.copy(scratch, 0, off, off + 65_536);
        await ha.update(scratch);
        scratch.fill(0); // overwritten at once: update copied it
      }
      await hb.update(b.subarray(off, off + 65_536));
    }
    const [da, db] = await Promise.all([ha.digest(), hb.digest()]);
    expect(da).toBe(expected(a));
    expect(db).toBe(expected(b));
  });

  it('an aborted stream leaves the next ones right, and a spent hash refuses more', async () => {
    const h = contentHash();
    await h.update(randomBytes(3 << 20));
    h.abort();
    const data = randomBytes(2 << 20);
    expect(await hashOf(data, 65_536)).toBe(expected(data));
    const spent = contentHash();
    await spent.digest();
    expect(() => spent.update(Buffer.from('x'))).toThrow(/ended/);
    await expect(spent.digest()).rejects.toThrow(/ended/);
  });
});

describe('the hash thread', () => {
  it('does not keep a process alive once its streams are done', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cove-sha256-'));
    const script = join(dir, 'hash.mjs');
    await writeFile(
      script,
      `import { contentHash } from ${JSON.stringify(new URL('./sha256.ts', import.meta.url).href)};
const h = contentHash();
for (let i = 0; i < 6; i++) await h.update(Buffer.alloc(1 << 20, i));
console.log(await h.digest());`,
    );
    const out = await run(process.execPath, [script], { timeout: 15_000 }).finally(() =>
      rm(dir, { recursive: true, force: true }),
    );
    const data = Buffer.concat(Array.from({ length: 6 }, (_, i) => Buffer.alloc(1 << 20, i)));
    expect(out.stdout.trim()).toBe(expected(data));
  });

  it('hashes chunks that start at any offset of their buffer, across block edges', async () => {
    // Each block starts at its first chunk's alignment (sha256.ts ALIGN): what it holds must
    // still be exactly the stream, whatever the offsets.
    const data = randomBytes((3 << 20) + 777);
    const h = contentHash();
    let off = 0;
    for (let i = 0; off < data.length; i++) {
      const n = Math.min(data.length - off, 65_536 - (i % 67));
      const shift = (i * 13) % 64;
      const holder = Buffer.alloc(n + shift);
      data.copy(holder, shift, off, off + n);
      const wait = h.update(holder.subarray(shift));
      if (wait) await wait;
      off += n;
    }
    expect(await h.digest()).toBe(expected(data));
  });
});
