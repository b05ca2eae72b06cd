import type { IncomingMessage, ServerResponse } from 'node:http';
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { isCoveError } from '../../core/errors.ts';
import type { EnvdDeps } from '../index.ts';
import { type FilesCall, HttpError, errnoOf, filesCall, replyError } from './call.ts';
import { requestEncoding } from './encoding.ts';
import { metadataOf } from './metadata.ts';
import { fileParts } from './multipart.ts';

/** One element of POST /files' reply (envd's EntryInfo of the REST API). */
export interface WrittenFile {
  path: string;
  name: string;
  type: 'file';
  metadata?: Record<string, string>;
}

/**
 * Writes one file (parents created as the user's, the file truncated or created 0644 and
 * made the user's) and replaces its metadata set: an upload without X-Metadata-* clears what
 * an earlier one left, since O_TRUNC keeps xattrs. The reply's metadata is read back from the
 * file, and left out when empty.
 */
async function writeOne(
  call: FilesCall,
  path: string,
  data: AsyncIterable<Buffer> | Buffer,
  metadata: Record<string, string>,
): Promise<WrittenFile> {
  let info = await call.agent.writeFile(path, data, call.as).catch((err: unknown) => {
    const errno = errnoOf(err);
    if (errno === 'EISDIR') throw new HttpError(400, `path is a directory: ${path}`);
    if (isCoveError(err, 'invalid_argument') && errno === 'ENOTDIR')
      throw new HttpError(400, `a parent of ${path} is not a directory`);
    throw err;
  });
  if (Object.keys(metadata).length > 0 || info.metadata)
    info = await call.agent.setMetadata(path, metadata, call.as);
  const kept = info.metadata && Object.keys(info.metadata).length > 0 ? info.metadata : undefined;
  return { path, name: posix.basename(path), type: 'file', ...(kept && { metadata: kept }) };
}

/**
 * POST /files (envd api/upload.go). multipart/form-data: every part named `file` is written,
 * to `?path=` when given, else to the part's filename taken verbatim (the SDK's writeFiles
 * puts each target path there); two parts for one path are a 400 after the first is written,
 * as envd. application/octet-stream: the body is the file, `?path=` is required. Either may
 * be gzip (`Content-Encoding`). Bodies stream to the agent with backpressure end to end.
 */
export async function upload(
  deps: EnvdDeps,
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
): Promise<void> {
  try {
    const call = await filesCall(deps, req, id, 'write');
    const gzip = requestEncoding(req.headers['content-encoding']) === 'gzip';
    const metadata = metadataOf(req.headers);
    const body: Readable = gzip ? req.pipe(createGunzip()) : req;
    if (gzip) {
      req.on('error', (err) => body.destroy(err));
      // Whoever reads the body meets a bad gzip stream's error (its iterator throws it); this
      // keeps one that comes before anyone reads (while the agent opens the file) from being
      // an uncaught exception of the whole server.
      body.on('error', () => {});
    }
    const queryPath = call.query.get('path');
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const written: WrittenFile[] = [];

    if (type === 'application/octet-stream') {
      if (queryPath === null)
        throw new HttpError(400, 'path query parameter is required for raw body upload');
      written.push(await writeOne(call, call.resolve(queryPath), body, metadata));
    } else if (type.startsWith('multipart/')) {
      for await (const part of fileParts(req.headers, body)) {
        const path = call.resolve(queryPath ?? part.filename);
        if (written.some((w) => w.path === path)) {
          throw new HttpError(
            400,
            `you cannot upload multiple files to the same path '${path}' in one upload request, only the first specified file was uploaded`,
          );
        }
        written.push(await writeOne(call, path, part.data, metadata));
      }
    } else {
      throw new HttpError(
        400,
        `unsupported content type: ${req.headers['content-type'] ?? ''}, expected multipart/form-data or application/octet-stream`,
      );
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(written));
  } catch (err) {
    if (isZlibError(err))
      replyError(deps, res, new HttpError(400, `error decompressing request body: ${err.message}`));
    else replyError(deps, res, err);
    // Whatever the client still sends is read and dropped, so the connection can be reused.
    req.resume();
  }
}

function isZlibError(err: unknown): err is Error {
  return (
    err instanceof Error &&
    typeof (err as NodeJS.ErrnoException).code === 'string' &&
    /^Z_/.test((err as NodeJS.ErrnoException).code!)
  );
}
