import { Busboy, type BusboyHeaders, type BusboyInstance } from '@fastify/busboy';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { HttpError } from './call.ts';
import { chunksOf } from './chunks.ts';

/** A `file` part: its `filename` verbatim (the SDK puts the target path there) and its bytes. */
export interface FilePart {
  filename: string;
  data: AsyncIterableIterator<Buffer> | Buffer;
}

/** A field named `file` without a filename (a FormData string) is buffered by busboy: bounded. */
const MAX_FIELD = 1 << 20;

/**
 * The `file` parts of a multipart body, in order, each streamed: busboy does not parse the
 * next part before this one's bytes are taken (plus its small buffers), so a slow write slows
 * the upload instead of filling memory. Other parts are skipped, as envd does.
 */
export async function* fileParts(headers: IncomingHttpHeaders, body: Readable): AsyncGenerator<FilePart> {
  let bb: BusboyInstance;
  try {
    // preservePath keeps slashes in filename; a filename with non-ASCII bytes is read as
    // UTF-8 (undici's FormData). Only a part with a filename is a file (as envd's Go reader),
    // whatever its Content-Type. Field values decode as latin1 so that Buffer.from(v,
    // 'latin1') gives back their bytes.
    bb = Busboy({
      headers: headers as BusboyHeaders,
      preservePath: true,
      defCharset: 'latin1',
      isPartAFile: (_name, _type, filename) => filename !== undefined,
      limits: { fieldSize: MAX_FIELD },
    });
  } catch (err) {
    throw new HttpError(400, `error parsing multipart form: ${(err as Error).message}`);
  }
  const parts: (FilePart | Error)[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  /** The file part being read: a failing body must end its reader too, not only the loop. */
  let current: Readable | undefined;
  let bodyFailure: Error | undefined;
  // A part's stream fails with the body's error, or else with busboy's (a malformed or
  // truncated form: the client's fault, 400).
  const partError = (err: Error): Error =>
    bodyFailure ??
    (err instanceof HttpError ? err : new HttpError(400, `error reading form: ${err.message}`));
  const push = (p: FilePart | Error): void => {
    parts.push(p);
    wake?.();
  };
  bb.on('file', (name: string, stream: Readable, filename: string | undefined) => {
    if (name !== 'file') return void stream.resume();
    current = stream;
    push({ filename: filename ?? '', data: chunksOf(stream, partError) });
  });
  bb.on('field', (name: string, value: string, _nameTruncated: boolean, valueTruncated: boolean) => {
    if (name !== 'file') return;
    if (valueTruncated)
      push(new HttpError(400, `form field 'file' without a filename is larger than ${MAX_FIELD} bytes`));
    else push({ filename: '', data: Buffer.from(value, 'latin1') });
  });
  bb.on('error', (err: Error) => {
    const e = new HttpError(400, `error reading form: ${err.message}`);
    if (current && !current.readableEnded) current.destroy(e);
    push(e);
  });
  bb.on('finish', () => {
    finished = true;
    wake?.();
  });
  const onBodyError = (err: Error): void => {
    bodyFailure ??= err;
    if (current && !current.readableEnded) current.destroy(err);
    push(err);
  };
  body.on('error', onBodyError);
  body.pipe(bb);
  try {
    for (;;) {
      const next = parts.shift();
      if (next instanceof Error) throw next;
      if (next) {
        yield next;
        continue;
      }
      if (finished) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    body.unpipe(bb);
    body.off('error', onBodyError);
    // Parts not taken (after an error) are drained so busboy and the request can finish.
    for (const p of parts) if (!(p instanceof Error) && !Buffer.isBuffer(p.data)) void p.data.return?.();
  }
}
