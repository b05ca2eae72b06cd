import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { connectAgent } from './client.ts';
import { FrameDecoder, MAX_FRAME, R, T, Writer } from './protocol.ts';
import { ROOT, TOKEN, buildAgent, skipReason, startAgent, type RunningAgent } from './test-agent.ts';

/** A fake agent: answers AUTH properly, then lets the test misbehave on each request. */
async function fakeAgent(
  onRequest: (s: Socket, type: number, id: number) => void,
): Promise<{ path: string; server: Server }> {
  const dir = mkdtempSync(join(tmpdir(), 'cove-fake-agent-'));
  const path = join(dir, 's');
  const server = createServer((s) => {
    const dec = new FrameDecoder();
    s.on('error', () => {});
    s.on('data', (chunk: Buffer) => {
      for (const f of dec.push(chunk)) {
        if (f.type === T.AUTH) s.write(new Writer().u32(1).u32(MAX_FRAME).u32(1).frame(R.OK, 0));
        else onRequest(s, f.type, f.id);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  server.on('close', () => rmSync(dir, { recursive: true, force: true }));
  return { path, server };
}

function header(len: number, type: number, id: number): Buffer {
  const h = Buffer.alloc(12);
  h.writeUInt32LE(len, 0);
  h[4] = type;
  h.writeUInt32LE(id, 8);
  return h;
}

describe('agent client against a hostile agent', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  const cases: Array<[string, (s: Socket, type: number, id: number) => void]> = [
    ['an oversize frame', (s) => s.write(header(MAX_FRAME + 1, R.OK, 1))],
    ['garbage', (s) => s.write(randomBytes(64))],
    ['an unknown stream id', (s, _t, id) => s.write(new Writer().frame(R.OK, id + 1000))],
    [
      'a frame type the stream does not expect',
      (s, _t, id) => s.write(new Writer().bytes(Buffer.from('x')).frame(R.CHUNK, id)),
    ],
    [
      'a malformed error',
      (s, _t, id) => s.write(new Writer().u32(2).str('not an errno').str('').frame(R.ERR, id)),
    ],
    ['trailing bytes', (s, _t, id) => s.write(new Writer().u8(0).frame(R.OK, id))],
    [
      'an entry whose metadata block is cut short',
      (s, _t, id) =>
        s.write(
          new Writer()
            .u8(1)
            .u8(1)
            .u16(1)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u32(0)
            .u16(2)
            .str('k')
            .str('v')
            .frame(R.OK, id),
        ),
    ],
    [
      'a stat with a lying length',
      (s, _t, id) => s.write(new Writer().u8(1).u8(1).u16(0).u32(0x7fffffff).frame(R.OK, id)),
    ],
  ];
  for (const [name, misbehave] of cases) {
    it(`rejects pending operations with CoveError on ${name}`, async () => {
      const fake = await fakeAgent(misbehave);
      server = fake.server;
      const c = await connectAgent(fake.path, TOKEN);
      const results = await Promise.allSettled([c.ping(), c.stat('/x', ROOT), c.list('/', 1, ROOT)]);
      for (const r of results) {
        expect(r.status).toBe('rejected');
        expect(isCoveError((r as PromiseRejectedResult).reason)).toBe(true);
      }
      await c.closed;
      await expect(c.ping()).rejects.toMatchObject({ code: 'unavailable' });
    });
  }

  it('rejects a read chunk beyond the granted credit', async () => {
    const flood = await fakeAgent((s, type, id) => {
      if (type !== T.READ) return;
      for (let i = 0; i < 20; i++) s.write(new Writer().bytes(Buffer.alloc(64 * 1024)).frame(R.CHUNK, id));
    });
    server = flood.server;
    const c2 = await connectAgent(flood.path, TOKEN);
    const it = c2.readFile('/f', ROOT)[Symbol.asyncIterator]();
    await it.next(); // sends READ; then the consumer stops pulling, so no credit goes back
    await new Promise((r) => setTimeout(r, 200));
    const err = await (async () => {
      for (;;) if ((await it.next()).done) return undefined;
    })().catch((e: unknown) => e);
    expect(isCoveError(err, 'unavailable')).toBe(true);
  });

  it('does not buffer a flood: it closes at the first bad header', async () => {
    let written = 0;
    let closedAt = -1;
    const fake = await fakeAgent((s) => {
      s.on('close', () => (closedAt = written));
      const blob = Buffer.alloc(1024 * 1024, 0xff);
      const pump = (): void => {
        while (written < 256 * 1024 * 1024 && !s.destroyed) {
          written += blob.length;
          if (!s.write(blob)) return void s.once('drain', pump);
        }
      };
      s.write(header(0xffffffff, R.DATA, 1));
      pump();
    });
    server = fake.server;
    const before = process.memoryUsage().rss;
    const c = await connectAgent(fake.path, TOKEN);
    await expect(c.ping()).rejects.toMatchObject({ code: 'unavailable' });
    await c.closed;
    await new Promise((r) => setTimeout(r, 100));
    expect(closedAt === -1 || closedAt < 64 * 1024 * 1024).toBe(true);
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  });
});

const skip = skipReason();

describe.skipIf(skip)('cove-agent against random frames', () => {
  let agent: RunningAgent;
  beforeAll(() => {
    buildAgent();
    agent = startAgent();
  });
  afterAll(async () => {
    await agent?.stop();
  });

  /** Connects and authenticates by hand, so the test can send anything. */
  async function raw(): Promise<Socket> {
    await connectAgent(agent.socket, TOKEN).then((c) => c.close()); // waits until it listens
    const s = createConnection(agent.socket);
    s.on('error', () => {});
    await new Promise((r) => s.once('connect', r));
    s.write(new Writer().bytes(Buffer.from(TOKEN)).frame(T.AUTH, 0));
    await new Promise((r) => s.once('data', r));
    return s;
  }

  // Well-formed requests that cannot modify the host's files, mutated a few bytes at a time so
  // that most of them parse far enough to reach the handlers; SPAWN only of /bin/true as nobody.
  function templates(): Array<[number, Writer]> {
    const u = (): Writer => new Writer().u32(65534).u32(65534);
    const dir = agent.dir;
    return [
      [T.PING, new Writer()],
      [T.CANCEL, new Writer()],
      [T.STAT, u().str(dir)],
      [T.LISTDIR, u().u32(2).str(dir)],
      [T.READ, u().u32(65536).str(join(dir, 'agent.sock'))],
      [T.CREDIT, new Writer().u32(1000)],
      [T.WATCH, u().u8(1).str(dir)],
      [T.SETMETA, u().str(join(dir, 'm')).u16(1).str('k').str('v')],
      [T.LIST_PROCS, new Writer()],
      [T.STDIN, new Writer().u32(1).bytes(Buffer.from('x'))],
      [T.CLOSE_STDIN, new Writer().u32(1)],
      [T.SIGNAL, new Writer().u32(1).u32(0).u8(1)],
      [T.RESIZE, new Writer().u32(1).u16(80).u16(24)],
      [T.ATTACH, new Writer().u32(1)],
      [T.SPAWN, u().u8(0).u16(0).u16(0).u32(0).str('/').str('').u32(1).str('/bin/true').u32(0)],
    ];
  }

  function mutate(f: Buffer): Buffer {
    const r = Math.random();
    if (r < 0.2) return f; // intact: exercises the real handlers between the broken ones
    const out = Buffer.from(f);
    const n = 1 + Math.floor(Math.random() * 3);
    for (let k = 0; k < n && out.length > 12; k++)
      out[12 + Math.floor(Math.random() * (out.length - 12))] = Math.floor(Math.random() * 256);
    if (r > 0.9) return Buffer.concat([out, randomBytes(1 + Math.floor(Math.random() * 8))]); // length mismatch
    if (r > 0.8 && out.length > 13) return out.subarray(0, out.length - 1); // truncated stream
    return out;
  }

  it('survives random and mutated frames', async () => {
    const tpl = templates();
    let answered = 0;
    for (let round = 0; round < 40; round++) {
      const s = await raw();
      s.on('data', () => answered++);
      const closed = new Promise((r) => s.once('close', r));
      for (let i = 0; i < 40; i++) {
        const [type, w] = tpl[Math.floor(Math.random() * tpl.length)]!;
        const id = 1 + Math.floor(Math.random() * 30);
        if (Math.random() < 0.03) s.write(randomBytes(1 + Math.floor(Math.random() * 40)));
        else s.write(mutate(w.frame(type, id)));
      }
      await Promise.race([closed, new Promise((r) => setTimeout(r, 30))]);
      s.destroy();
      expect(agent.proc.exitCode).toBeNull();
    }
    expect(answered).toBeGreaterThan(0);
    const c = await connectAgent(agent.socket, TOKEN);
    await c.ping();
    c.close();
  });

  it('closes on header flags a request does not take', async () => {
    const s = await raw();
    const closed = new Promise((r) => s.once('close', r));
    const ping = new Writer();
    ping.flags = 0x01; // ELEVATED belongs to file requests only
    s.write(ping.frame(T.PING, 1));
    await closed;
    const c = await connectAgent(agent.socket, TOKEN);
    await c.ping();
    c.close();
  });

  it('closes on an oversize frame and stays up', async () => {
    const s = await raw();
    const closed = new Promise((r) => s.once('close', r));
    s.write(header(MAX_FRAME + 1, T.PING, 1));
    await closed;
    const c = await connectAgent(agent.socket, TOKEN);
    await c.ping();
    c.close();
  });
});
