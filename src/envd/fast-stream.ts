/**
 * One server-streaming RPC over the Connect protocol served straight from Node's request and
 * response, for the hot path (process.Start: every `commands.run`). connect-node's adapter
 * runs each call through web Headers, linked AbortControllers, a DOMException at the end of
 * every call and ~6 async-generator transforms per message; here the same implementation
 * (the function registered on the router) is driven by one loop that writes each message as
 * it comes. What it takes is exactly Connect's streaming protocol with no compression
 * (`application/connect+json` or `+proto`, no `Connect-Content-Encoding`, no
 * `Connect-Accept-Encoding` asking for one); anything else (gRPC, gRPC-web, compression, a bad
 * timeout header) is left to connect-node. Serialization, timeouts and the end-of-stream
 * message are connect's own functions, and the message types protobuf-es's generated ones.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  create,
  type DescMessage,
  type DescMethodStreaming,
  type MessageInitShape,
  type MessageShape,
} from '@bufbuild/protobuf';
import { Code, ConnectError, type ContextValues, type HandlerContext } from '@connectrpc/connect';
import { createMethodSerializationLookup, encodeEnvelope } from '@connectrpc/connect/protocol';
import {
  createEndStreamSerialization,
  endStreamFlag,
  parseContentType,
  parseTimeout,
} from '@connectrpc/connect/protocol-connect';

/** A request body this large is refused: a spawn request's argv and env fit in the agent's
 * 128 KiB frame (agent-channel/protocol.ts), and JSON escaping at most multiplies that by 6. */
const READ_MAX_BYTES = 1 << 20;

/** Connect's deadline reason (connect's createDeadlineSignal words it the same). */
const timedOut = () => new ConnectError('the operation timed out', Code.DeadlineExceeded);
/** What the signal says once the call is over: a reason given, so that no DOMException is made. */
const COMPLETED = new ConnectError('the call completed', Code.Canceled);

const ENCODINGS_WE_DO_NOT_SERVE = /\b(gzip|br|deflate)\b/i;

export type FastStreamHandler = (req: IncomingMessage, res: ServerResponse, values: ContextValues) => boolean;

/** Whether this request is one the fast path serves (else connect-node does). */
function eligible(req: IncomingMessage): { binary: boolean; timeoutMs: number | undefined } | undefined {
  if (req.method !== 'POST') return undefined;
  const type = parseContentType(req.headers['content-type'] ?? null);
  if (!type?.stream) return undefined;
  const encoding = req.headers['connect-content-encoding'];
  if (encoding !== undefined && encoding !== 'identity') return undefined;
  const accept = req.headers['connect-accept-encoding'];
  if (accept !== undefined && ENCODINGS_WE_DO_NOT_SERVE.test(String(accept))) return undefined;
  const raw = req.headers['connect-timeout-ms'];
  const timeout = parseTimeout(typeof raw === 'string' ? raw : null, Number.MAX_SAFE_INTEGER);
  if (timeout.error) return undefined; // connect-node answers it with its own error
  return { binary: type.binary, timeoutMs: timeout.timeoutMs };
}

function requestHeaders(req: IncomingMessage): Headers {
  const headers = new Headers();
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) headers.append(raw[i]!, raw[i + 1]!);
  return headers;
}

/** The one enveloped message of a server-streaming request, as connect-node reads it. */
function singleMessage(body: Buffer): Uint8Array {
  if (body.length === 0)
    throw new ConnectError(
      'protocol error: missing input message for server-streaming method',
      Code.Unimplemented,
    );
  if (body.length < 5) throw new ConnectError('protocol error: incomplete envelope', Code.InvalidArgument);
  const flags = body[0]!;
  const length = body.readUInt32BE(1);
  if (body.length < 5 + length)
    throw new ConnectError(
      `protocol error: promised ${length} bytes in enveloped message, got ${body.length - 5} bytes`,
      Code.InvalidArgument,
    );
  if (flags !== 0)
    throw new ConnectError(`protocol error: unexpected envelope flags ${flags}`, Code.InvalidArgument);
  if (body.length > 5 + length)
    throw new ConnectError(
      'protocol error: received extra input message for server-streaming method',
      Code.Unimplemented,
    );
  return body.subarray(5);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > READ_MAX_BYTES) {
        req.removeAllListeners('data');
        req.resume();
        reject(
          new ConnectError(
            `message size is larger than configured readMaxBytes ${READ_MAX_BYTES}`,
            Code.ResourceExhausted,
          ),
        );
      } else chunks.push(chunk);
    });
    req.once('end', () => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size)));
    req.once('error', reject);
  });
}

/**
 * `impl` served for requests that `eligible` accepts; the returned function answers false for
 * the others, which the caller hands to connect-node. A client that goes away aborts the
 * call's signal (the implementation stops following, as under connect-node); the call's
 * deadline (`Connect-Timeout-Ms`) aborts it with deadline_exceeded. Each write waits for
 * the socket to drain before the next message is pulled, as connect-node does.
 */
export function fastServerStream<I extends DescMessage, O extends DescMessage>(
  method: DescMethodStreaming<I, O>,
  impl: (req: MessageShape<I>, ctx: HandlerContext) => AsyncIterable<MessageInitShape<O>>,
): FastStreamHandler {
  const serialization = createMethodSerializationLookup(method, undefined, undefined, {
    readMaxBytes: READ_MAX_BYTES,
    writeMaxBytes: 0xffffffff,
  });
  const endStream = createEndStreamSerialization(undefined);

  return (req, res, values) => {
    const accepted = eligible(req);
    if (!accepted) return false;
    void serve(req, res, values, accepted.binary, accepted.timeoutMs);
    return true;
  };

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    values: ContextValues,
    binary: boolean,
    timeoutMs: number | undefined,
  ): Promise<void> {
    const abort = new AbortController();
    const deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    if (timeoutMs !== undefined && timeoutMs <= 0) abort.abort(timedOut());
    else if (timeoutMs !== undefined) timer = setTimeout(() => abort.abort(timedOut()), timeoutMs);
    const gone = () => {
      if (!res.writableFinished) abort.abort(new ConnectError('the client went away', Code.Canceled));
    };
    res.once('close', gone);
    const contentType = binary ? 'application/connect+proto' : 'application/connect+json';
    const ctx: HandlerContext = {
      method,
      service: method.parent,
      signal: abort.signal,
      timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
      requestMethod: 'POST',
      requestHeader: requestHeaders(req),
      responseHeader: new Headers({ 'content-type': contentType }),
      responseTrailer: new Headers(),
      protocolName: 'connect',
      values,
      url: `http://${req.headers.host ?? 'envd'}${req.url ?? '/'}`,
    };
    // What is written before control returns to the event loop (all that one agent frame
    // causes: the start event, or the last output, the end event and the end of the stream)
    // leaves in one syscall. Not later than that: a flush deferred to setImmediate let a
    // fast process fill its 16 MiB subscriber queue faster than an in-process client read it.
    let corked = false;
    const write = (chunk: Uint8Array): boolean => {
      if (!res.headersSent) {
        const head: Record<string, string> = {};
        ctx.responseHeader.forEach((v, k) => (head[k] = v));
        res.writeHead(200, head);
      }
      // The socket, not the response: a corked ServerResponse buffers chunks that end()
      // would send after the last-chunk marker (Node 24's OutgoingMessage.end).
      const socket = res.socket;
      if (!corked && socket) {
        corked = true;
        socket.cork();
        process.nextTick(() => {
          corked = false;
          if (!res.writableEnded) socket.uncork(); // end() uncorks fully by itself
        });
      }
      return res.write(chunk);
    };
    const drained = () =>
      new Promise<void>((resolve) => {
        const done = () => {
          res.off('drain', done);
          res.off('close', done);
          resolve();
        };
        res.on('drain', done);
        res.on('close', done);
      });
    let error: ConnectError | undefined;
    try {
      const input = serialization.getI(binary).parse(singleMessage(await readBody(req)));
      const output = serialization.getO(binary);
      for await (const message of impl(input, ctx)) {
        if (res.destroyed) break;
        const ok = write(encodeEnvelope(0, output.serialize(create(method.output, message))));
        if (!ok && !res.destroyed) await drained();
      }
    } catch (err) {
      error =
        err instanceof ConnectError
          ? err
          : new ConnectError('internal error', Code.Internal, undefined, undefined, err);
    } finally {
      clearTimeout(timer);
      res.off('close', gone);
      if (!abort.signal.aborted) abort.abort(COMPLETED);
    }
    if (res.destroyed) return;
    write(
      encodeEnvelope(
        endStreamFlag,
        endStream.serialize({ metadata: ctx.responseTrailer, ...(error && { error }) }),
      ),
    );
    res.end();
  }
}
