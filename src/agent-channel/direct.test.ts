import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent } from './client.ts';
import type { HostFiles } from './host-files.ts';
import { MAX_FRAME, R, T, Writer } from './protocol.ts';
import { NOBODY, ROOT, TOKEN, buildAgent, skipReason, startAgent, type RunningAgent } from './test-agent.ts';
import type { AgentClient } from './types.ts';

const skip = skipReason();

async function collect(it: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of it) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/** The bytes as a request body arrives: in pieces, each a turn of the event loop later (or, `burst`, at once). */
async function* chunked(data: Buffer, size: number, burst = false): AsyncGenerator<Buffer> {
  for (let off = 0; off < data.length; off += size) {
    await (burst ? Promise.resolve() : new Promise((resolve) => setImmediate(resolve)));
    yield data.subarray(off, off + size);
  }
}

/**
 * READ and WRITE with the DIRECT flag against the real agent (spec/agent-protocol.md §5): the
 * host moves the bytes through the descriptor the agent names, or, when it refuses it, the
 * stream goes on through the agent. The host side here opens /proc/<agent>/fd/<n> without the
 * overlay checks (test/host-files.test.ts covers those).
 */
describe.skipIf(skip)('cove-agent direct transfers', () => {
  let agent: RunningAgent;
  let d: string;
  const asked: { fd: number; mode: string }[] = [];
  const through = (how: 'host' | 'agent' | 'read-only'): HostFiles => ({
    open(fd, mode) {
      asked.push({ fd, mode });
      if (how === 'agent') return undefined;
      // 'read-only': a descriptor that cannot write, so the host's write fails.
      const flags = how === 'read-only' || mode === 'r' ? 'r' : 'r+';
      return openSync(`/proc/${agent.proc.pid}/fd/${fd}`, flags);
    },
  });
  const client = (how: 'host' | 'agent' | 'read-only'): Promise<AgentClient> =>
    connectAgent(agent.socket, TOKEN, { host: through(how) });

  beforeAll(() => {
    buildAgent();
    agent = startAgent();
    d = join(agent.dir, 'fs');
    mkdirSync(d);
    chmodSync(agent.dir, 0o755);
    chmodSync(d, 0o777);
  });
  afterAll(async () => {
    await agent?.stop();
  });

  for (const how of ['host', 'agent'] as const) {
    it(`writes and reads whole files, the bytes moved by the ${how}`, async () => {
      const c = await client(how);
      try {
        for (const size of [0, 1, 65_536, 3 * 65_536 + 7, (5 << 20) + 3]) {
          const data = randomBytes(size);
          const path = join(d, `${how}-${size}.bin`);
          asked.length = 0;
          const info = await c.writeFile(path, chunked(data, 50_000), NOBODY);
          expect(info).toMatchObject({ size, uid: NOBODY.uid, type: 'file' });
          expect(readFileSync(path).equals(data), `write ${size}`).toBe(true);
          expect(asked).toEqual([{ fd: expect.any(Number) as number, mode: 'w' }]);
          expect((await collect(c.readFile(path, NOBODY))).equals(data), `read ${size}`).toBe(true);
          // The agent offers its descriptor for a file of 1 MiB or more; smaller ones come as CHUNKs.
          expect(asked.map((a) => a.mode)).toEqual(size >= 1 << 20 ? ['w', 'r'] : ['w']);
        }
        // Chunks faster than the disk: each write takes all that queued meanwhile, in order.
        const burst = randomBytes((9 << 20) + 11);
        await c.writeFile(join(d, `${how}-burst.bin`), chunked(burst, 4093, true), ROOT);
        expect(readFileSync(join(d, `${how}-burst.bin`)).equals(burst)).toBe(true);
        // A small buffer is not worth the round trip: it goes through the agent, unasked.
        asked.length = 0;
        await c.writeFile(join(d, 'small.txt'), Buffer.from('hi'), ROOT);
        expect(asked).toEqual([]);
        // The connection is still in order after every stream ended.
        await c.ping();
      } finally {
        c.close();
      }
    });
  }

  it('keeps the agent’s refusals: the user’s permissions, a directory', async () => {
    const c = await client('host');
    try {
      const locked = join(d, 'locked');
      mkdirSync(locked, { mode: 0o700 });
      await expect(c.writeFile(join(locked, 'x'), chunked(randomBytes(10), 4), NOBODY)).rejects.toMatchObject(
        {
          code: 'permission_denied',
        },
      );
      await expect(c.writeFile(d, chunked(randomBytes(10), 4), ROOT)).rejects.toThrow();
      await c.ping();
    } finally {
      c.close();
    }
  });

  it('a write the host cannot finish fails cleanly and leaves the connection usable', async () => {
    const c = await client('read-only');
    const path = join(d, 'fails.bin');
    try {
      await expect(c.writeFile(path, chunked(randomBytes(200_000), 65_536), ROOT)).rejects.toMatchObject({
        message: expect.stringContaining('EBADF') as string,
      });
      await c.ping();
      expect(statSync(path).size).toBe(0);
    } finally {
      c.close();
    }
  });

  it('a reader that stops early closes the stream on both sides', async () => {
    const c = await client('host');
    const path = join(d, 'partial.bin');
    writeFileSync(path, randomBytes(1 << 20));
    try {
      for await (const chunk of c.readFile(path, ROOT)) {
        expect(chunk.length).toBeGreaterThan(0);
        break;
      }
      await c.ping();
      expect((await collect(c.readFile(path, ROOT))).length).toBe(1 << 20);
    } finally {
      c.close();
    }
  });
});

/** A stand-in agent of protocol `version`: answers AUTH, then hands each raw request frame to `onRequest`. */
async function rawAgent(version: number, onRequest: (s: Socket, frame: Buffer) => void) {
  const dir = mkdtempSync(join(tmpdir(), 'cove-raw-agent-'));
  const path = join(dir, 's');
  const server = createServer((s) => {
    s.on('error', () => {});
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      while (buf.length >= 12 && buf.length >= buf.readUInt32LE(0)) {
        const frame = buf.subarray(0, buf.readUInt32LE(0));
        buf = buf.subarray(frame.length);
        if (frame[4] === T.AUTH) s.write(new Writer().u32(version).u32(MAX_FRAME).u32(1).frame(R.OK, 0));
        else onRequest(s, frame);
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  return {
    path,
    close: () => new Promise<void>((r) => server.close(() => (rmSync(dir, { recursive: true }), r()))),
  };
}

describe('direct transfers and the agent’s protocol version', () => {
  const never: HostFiles = {
    open: () => {
      throw new Error('the host must not be asked');
    },
  };

  it('an agent of version 1 (from before DIRECT) is served, and never sent the flag', async () => {
    const flags: number[] = [];
    const agent = await rawAgent(1, (s, f) => {
      flags.push(f[5]!);
      if (f[4] === T.WEND) s.write(new Writer().u32(5).str('EIO').str('').frame(R.ERR, f.readUInt32LE(8)));
    });
    const c = await connectAgent(agent.path, TOKEN, { host: never });
    try {
      const writing = c.writeFile('/x', chunked(randomBytes(10), 5), ROOT);
      await expect(writing).rejects.toThrow(/EIO/); // the stand-in fails every write at its end
      expect(flags.length).toBeGreaterThan(0);
      expect(flags.every((f) => f === 0)).toBe(true);
    } finally {
      c.close();
      await agent.close();
    }
  });

  it('an FD the host did not ask for ends the connection', async () => {
    const agent = await rawAgent(2, (s, f) => {
      if (f[4] === T.STAT) s.write(new Writer().u32(3).frame(R.FD, f.readUInt32LE(8)));
    });
    const c = await connectAgent(agent.path, TOKEN, { host: never });
    try {
      await expect(c.stat('/x', ROOT)).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      c.close();
      await agent.close();
    }
  });
});
