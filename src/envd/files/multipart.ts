import busboy from 'busboy';
import type { IncomingHttpHeaders } from 'node:http';
import type { Readable } from 'node:stream';
import { HttpError } from './call.ts';

/** A `file` part: its `filename` verbatim (the SDK puts the target path there) and its bytes. */
export interface FilePart {
  filename: string;
  data: AsyncIterable<Buffer> | Buffer;
}

/** A field named `file` without a filename (a FormData string) is buffered by busboy: bounded. */
const MAX_FIELD = 1 << 20;

/**
 * The `file` parts of a multipart body, in order, each streamed: busboy does not parse the
 * next part before this one's bytes are taken (plus its small buffer), so a slow write slows
 * the upload instead of filling memory. Other parts are skipped, as envd does.
 */
export async function* fileParts(headers: IncomingHttpHeaders, body: Readable): AsyncGenerator<FilePart> {
  let bb: busboy.Busboy;
  try {
    // preservePath keeps slashes in filename; filename bytes are UTF-8 (undici's FormData).
    // Field values decode as latin1 so that Buffer.from(v, 'latin1') gives back their bytes.
    bb = busboy({
      headers,
      preservePath: true,
      defParamCharset: 'utf8',
      defCharset: 'latin1',
      limits: { fieldSize: MAX_FIELD },
    });
  } catch (err) {
    throw new HttpError(400, `error parsing multipart form: ${(err as Error).message}`);
  }
  const parts: (FilePart | Error)[] = [];
  let wake: (() => void) | undefined;
  let finished = false;
  const push = (p: FilePart | Error): void => {
    parts.push(p);
    wake?.();
  };
  bb.on('file', (name, stream, info) => {
    if (name !== 'file') return void stream.resume();
    push({ filename: info.filename ?? '', data: stream });
  });
  bb.on('field', (name, value, info) => {
    if (name !== 'file') return;
    if (info.valueTruncated)
      push(new HttpError(400, `form field 'file' without a filename is larger than ${MAX_FIELD} bytes`));
    else push({ filename: '', data: Buffer.from(value, 'latin1') });
  });
  bb.on('error', (err: Error) => push(new HttpError(400, `error reading form: ${err.message}`)));
  bb.on('close', () => {
    finished = true;
    wake?.();
  });
  body.on('error', (err) => push(err));
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
    // Parts not taken (after an error) are drained so busboy and the request can finish.
    for (const p of parts)
      if (!(p instanceof Error) && !Buffer.isBuffer(p.data)) (p.data as Readable).resume();
  }
}
