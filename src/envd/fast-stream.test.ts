import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { MessageInitShape } from '@bufbuild/protobuf';
import {
  Code,
  ConnectError,
  createClient,
  createContextValues,
  type HandlerContext,
} from '@connectrpc/connect';
import { compressionGzip, connectNodeAdapter, createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Process, type StartRequest, type StartResponseSchema } from '../gen/process/process_pb.js';
import { fastServerStream } from './fast-stream.ts';

type Reply = MessageInitShape<typeof StartResponseSchema>;

const data = (text: string): Reply => ({
  event: { event: { case: 'data', value: { output: { case: 'stdout', value: Buffer.from(text) } } } },
});

/** What the test implementation does, chosen by the command it is asked to start. */
async function* impl(req: StartRequest, ctx: HandlerContext): AsyncGenerator<Reply> {
  const cmd = req.process?.cmd ?? '';
  if (cmd === 'fail-first') throw new ConnectError('no such thing', Code.NotFound);
  yield { event: { event: { case: 'start', value: { pid: 7 } } } };
  if (cmd === 'echo')
    yield data(`${req.process?.args.join(' ')} as ${ctx.requestHeader.get('authorization')}`);
  if (cmd === 'fail-later') throw new ConnectError('gone', Code.Unavailable);
  if (cmd === 'flood') for (let i = 0; i < 64; i++) yield data('x'.repeat(64 * 1024));
  if (cmd === 'wait') {
    // Follows until the call's signal says stop, as envd's follow() does.
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve()));
    const reason: unknown = ctx.signal.reason;
    served.push(reason instanceof ConnectError ? reason.code : 'other');
    if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) throw reason;
    return;
  }
  yield { event: { event: { case: 'end', value: { exitCode: 0, exited: true, status: 'exit status 0' } } } };
}

/** How each request was served: 'fast' or 'connect', and the abort reasons 'wait' saw. */
const served: Array<string | Code> = [];

describe('fastServerStream', () => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    const fast = fastServerStream(Process.method.start, impl);
    const connect = connectNodeAdapter({ routes: (r) => r.service(Process, { start: impl }) });
    server = createServer((req, res) => {
      if (req.url === '/process.Process/Start' && fast(req, res, createContextValues())) served.push('fast');
      else {
        served.push('connect');
        connect(req, res);
      }
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => {
    server.closeAllConnections();
    server.close();
  });

  function client(opts: { binary: boolean; gzip?: boolean }) {
    return createClient(
      Process,
      createConnectTransport({
        baseUrl: url,
        httpVersion: '1.1',
        useBinaryFormat: opts.binary,
        acceptCompression: opts.gzip ? [compressionGzip] : [],
      }),
    );
  }

  async function collect(stream: AsyncIterable<{ event?: { event: { case?: string; value?: unknown } } }>) {
    const kinds: string[] = [];
    let out = '';
    try {
      for await (const m of stream) {
        const e = m.event?.event;
        kinds.push(e?.case ?? 'none');
        if (e?.case === 'data')
          out += Buffer.from((e.value as { output: { value: Uint8Array } }).output.value).toString();
      }
      return { kinds, out };
    } catch (err) {
      return { kinds, out, error: ConnectError.from(err) };
    }
  }

  it.each([true, false])('streams every message and the end (binary: %s)', async (binary) => {
    served.length = 0;
    const got = await collect(
      client({ binary }).start(
        { process: { cmd: 'echo', args: ['a', 'b'] } },
        { headers: { authorization: 'Basic dXNlcjo=' } },
      ),
    );
    expect(got).toEqual({ kinds: ['start', 'data', 'end'], out: 'a b as Basic dXNlcjo=' });
    expect(served).toEqual(['fast']);
  });

  it('ends the stream with the error, before or after the first message', async () => {
    const first = await collect(client({ binary: false }).start({ process: { cmd: 'fail-first' } }));
    expect(first.kinds).toEqual([]);
    expect(first.error?.code).toBe(Code.NotFound);
    expect(first.error?.rawMessage).toBe('no such thing');
    const later = await collect(client({ binary: true }).start({ process: { cmd: 'fail-later' } }));
    expect(later.kinds).toEqual(['start']);
    expect(later.error?.code).toBe(Code.Unavailable);
  });

  /** One Connect request by hand (fetch): the envelopes of its reply, decoded. */
  async function raw(body: Buffer, headers: Record<string, string> = {}) {
    const res = await fetch(`${url}/process.Process/Start`, {
      method: 'POST',
      headers: { 'content-type': 'application/connect+json', ...headers },
      body,
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    const envelopes: Array<{ flags: number; json: unknown }> = [];
    for (let at = 0; at < bytes.length;) {
      const length = bytes.readUInt32BE(at + 1);
      envelopes.push({
        flags: bytes[at]!,
        json: JSON.parse(bytes.subarray(at + 5, at + 5 + length).toString()),
      });
      at += 5 + length;
    }
    return { status: res.status, envelopes };
  }
  const envelope = (json: string) =>
    Buffer.concat([Buffer.from([0, 0, 0, 0, Buffer.byteLength(json)]), Buffer.from(json)]);

  it('aborts the call at its deadline (Connect-Timeout-Ms) with deadline_exceeded', async () => {
    served.length = 0;
    // By hand: a Connect client would give up at the same moment, and the server would see it go.
    const got = await raw(envelope('{"process":{"cmd":"wait"}}'), { 'connect-timeout-ms': '200' });
    expect(got.status).toBe(200);
    expect(got.envelopes).toEqual([
      { flags: 0, json: { event: { start: { pid: 7 } } } },
      { flags: 2, json: { error: { code: 'deadline_exceeded', message: 'the operation timed out' } } },
    ]);
    expect(served).toEqual(['fast', Code.DeadlineExceeded]);
  });

  it('aborts the call when the client goes away', async () => {
    served.length = 0;
    const ac = new AbortController();
    const stream = client({ binary: true }).start({ process: { cmd: 'wait' } }, { signal: ac.signal });
    const it = stream[Symbol.asyncIterator]();
    const first = await it.next();
    expect(first.done ? undefined : first.value.event?.event.case).toBe('start');
    ac.abort();
    await expect(it.next()).rejects.toThrow();
    await expect.poll(() => served).toEqual(['fast', Code.Canceled]);
  });

  it('carries 4 MiB of output with backpressure intact', async () => {
    const got = await collect(client({ binary: true }).start({ process: { cmd: 'flood' } }));
    expect(got.kinds.length).toBe(66);
    expect(got.out.length).toBe(64 * 64 * 1024);
  });

  it('leaves what it does not serve to connect-node: compression, bad framing kept as errors', async () => {
    served.length = 0;
    const gz = await collect(
      client({ binary: true, gzip: true }).start({ process: { cmd: 'echo', args: ['z'] } }),
    );
    expect(gz.kinds).toEqual(['start', 'data', 'end']);
    expect(served).toEqual(['connect']);
    // Two messages where a server stream takes one: connect-node's error, from the fast path.
    const twice = envelope('{"process":{"cmd":"echo"}}');
    const got = await raw(Buffer.concat([twice, twice]));
    expect(got.status).toBe(200);
    expect(got.envelopes).toEqual([
      {
        flags: 2,
        json: {
          error: { code: 'unimplemented', message: expect.stringMatching(/extra input message/) as unknown },
        },
      },
    ]);
    expect(served).toEqual(['connect', 'fast']);
  });
});
