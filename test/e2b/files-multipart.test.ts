import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove } from '../helpers.ts';

const BOUNDARY = 'cove-test-boundary-7d1f';

/** A multipart body by hand: `[name, filename | undefined, bytes]` per part. */
function form(parts: [string, string | undefined, Buffer | string][], close = true): Buffer {
  const out: Buffer[] = [];
  for (const [name, filename, data] of parts) {
    const fn = filename === undefined ? '' : `; filename="${filename}"`;
    out.push(Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"${fn}\r\n\r\n`));
    out.push(Buffer.from(data), Buffer.from('\r\n'));
  }
  if (close) out.push(Buffer.from(`--${BOUNDARY}--\r\n`));
  return Buffer.concat(out);
}

/**
 * The SDK's default upload (multipart/form-data, src/envd/files/multipart.ts) through the real
 * SDK, and the multipart edges the SDK does not produce (gzip, foreign fields, a body cut
 * short, a client that goes away) by hand: the bytes arrive exactly, errors are envd's 400s,
 * and the server serves on afterwards.
 */
describe.skipIf(!canRunSandboxes)('multipart uploads', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let sbx: Sandbox;
  let token: string;

  /** POST /files straight to envd with a hand-made body. */
  function post(body: Buffer, query = '', headers: Record<string, string> = {}): Promise<Response> {
    return fetch(new URL(`/files${query}`, cove.url), {
      method: 'POST',
      body,
      headers: {
        'E2b-Sandbox-Id': sbx.sandboxId,
        'E2b-Sandbox-Port': '49983',
        'X-Access-Token': token,
        'Content-Type': `multipart/form-data; boundary=${BOUNDARY}`,
        ...headers,
      },
    });
  }

  beforeAll(async () => {
    cove = await startTestCove();
    pointSdkAt(cove);
    sbx = await Sandbox.create('base', { secure: true });
    token = cove.manager.get(sbx.sandboxId).envdAccessToken!;
  });

  afterAll(async () => {
    await sbx?.kill().catch(() => undefined);
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('writes bytes that look like the boundary exactly, at every size', async () => {
    // undici's boundary starts `----formdata-undici-0`: its prefixes, at chunk edges too.
    const lookalike = Buffer.from('\r\n------formdata-undici-0\r\n--\r\n-\r');
    const body = (n: number) => {
      const b = randomBytes(n);
      for (let at = 0; at + lookalike.length <= n; at += 65536 - 7) lookalike.copy(b, at);
      if (n >= lookalike.length) lookalike.copy(b, n - lookalike.length);
      return b;
    };
    for (const n of [0, 1, 40, 65536, (1 << 20) + 13]) {
      const data = body(n);
      await sbx.files.write(`/tmp/look-${n}.bin`, data.buffer.slice(data.byteOffset, data.byteOffset + n));
      const back = Buffer.from(await sbx.files.read(`/tmp/look-${n}.bin`, { format: 'bytes' }));
      expect(back.equals(data), `${n} bytes`).toBe(true);
    }
  });

  it('writes several files of one request in order, with their names verbatim', async () => {
    const bytes = [Buffer.from('content 0'), Buffer.from('content 1'), randomBytes(300_000)];
    const files = ['a.txt', 'dir/ü b.txt', 'dir/sub/c.bin'].map((p, i) => ({
      path: `/tmp/many/${p}`,
      data: new Blob([bytes[i]!]),
    }));
    const infos = await sbx.files.write(files);
    expect(infos.map((i) => i.path)).toEqual(files.map((f) => f.path));
    for (const [i, f] of files.entries()) {
      const back = Buffer.from(await sbx.files.read(f.path, { format: 'bytes' }));
      expect(back.equals(bytes[i]!), f.path).toBe(true);
    }
  });

  it('takes a gzip body, skips foreign parts, and takes a `file` field as its bytes', async () => {
    const raw = form([
      ['note', undefined, 'ignored'],
      ['other', '/tmp/never.txt', 'ignored'],
      ['file', '/tmp/gz/one.bin', randomBytes(100_000)],
    ]);
    const res = await post(gzipSync(raw), '', { 'Content-Encoding': 'gzip' });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual([{ name: 'one.bin', path: '/tmp/gz/one.bin', type: 'file' }]);
    expect(await sbx.files.exists('/tmp/never.txt')).toBe(false);
    const field = await post(form([['file', undefined, 'as a field']]), '?path=/tmp/gz/field.txt');
    expect(field.status).toBe(200);
    expect(await sbx.files.read('/tmp/gz/field.txt')).toBe('as a field');
  });

  it('answers a body cut short or without boundary with 400, and serves on', async () => {
    const cut = form([['file', '/tmp/cut.bin', randomBytes(200_000)]], false).subarray(0, 150_000);
    const short = await post(cut);
    expect(short.status).toBe(400);
    expect(((await short.json()) as { message: string }).message).toMatch(/error reading form/);
    const noBoundary = await post(form([['file', '/tmp/x', 'x']]), '', {
      'Content-Type': 'multipart/form-data',
    });
    expect(noBoundary.status).toBe(400);
    await sbx.files.write('/tmp/after.txt', 'still here');
    expect(await sbx.files.read('/tmp/after.txt')).toBe('still here');
  });

  it('lets a client go away mid-upload and serves on', async () => {
    const url = new URL('/files', cove.url);
    const body = form([['file', '/tmp/gone.bin', randomBytes(4 << 20)]]);
    await new Promise<void>((resolve) => {
      const req = request(url, {
        method: 'POST',
        headers: {
          'E2b-Sandbox-Id': sbx.sandboxId,
          'E2b-Sandbox-Port': '49983',
          'X-Access-Token': token,
          'Content-Type': `multipart/form-data; boundary=${BOUNDARY}`,
          'Content-Length': String(body.length),
        },
      });
      req.on('error', () => resolve());
      req.on('response', () => resolve());
      req.write(body.subarray(0, 1 << 20), () => setTimeout(() => req.destroy(), 50));
    });
    // The server's side of that upload ends too (a write left waiting would hold the agent's
    // stream and the request forever): its audit record says it failed.
    const audit = async () => {
      const res = await fetch(`${cove.url}/cove/v1/audit?action=file.write&sandbox=${sbx.sandboxId}`, {
        headers: { 'x-api-key': cove.apiKey },
      });
      const { events } = (await res.json()) as { events: { outcome: string; fields: { path?: string } }[] };
      return events.find((e) => e.fields.path === '/tmp/gone.bin');
    };
    await expect.poll(audit, { timeout: 10_000 }).toBeDefined();
    expect((await audit())!.outcome).not.toBe('ok');
    await sbx.files.write('/tmp/after-gone.txt', 'ok');
    expect(await sbx.files.read('/tmp/after-gone.txt')).toBe('ok');
  });
});
