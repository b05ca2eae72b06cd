import type { IncomingMessage, ServerResponse } from 'node:http';
import { posix } from 'node:path';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, deflateRawSync } from 'node:zlib';
import { releaseChunk } from '../../agent-channel/index.ts';
import { isCoveError } from '../../core/errors.ts';
import type { EnvdDeps } from '../index.ts';
import { HttpError, filesCall, replyError } from './call.ts';
import { contentDisposition, contentTypeOf, responseEncoding } from './encoding.ts';
import { type ByteRange, rangeOf } from './range.ts';

/**
 * `length` bytes of the file from `start`: the agent streams from the beginning (its READ has
 * no offset), so a range skips what comes before. Exactly `length` bytes or an error: the
 * Content-Length was promised from the stat, and a file that shrank meanwhile must not look
 * complete.
 */
async function* slice(source: AsyncIterable<Buffer>, start: number, length: number): AsyncGenerator<Buffer> {
  let skip = start;
  let left = length;
  for await (let chunk of source) {
    if (skip > 0) {
      const n = Math.min(skip, chunk.length);
      skip -= n;
      chunk = chunk.subarray(n);
    }
    if (chunk.length === 0) continue;
    if (chunk.length >= left) {
      if (left > 0) yield chunk.subarray(0, left);
      return; // leaving the loop cancels the agent's read
    }
    left -= chunk.length;
    yield chunk;
  }
  if (left > 0) throw new Error('file shrank while it was being read');
}

/** Copies chunks to `out` as fast as it takes them; Readable.from and pipeline cost a third of
 * the throughput at these rates. The source is closed (the agent's read cancelled) on failure.
 * Each chunk (the agent channel's, used by nothing else) goes back to the channel's buffer
 * pool once `out` has written it, so a transfer recycles a few buffers instead of allocating
 * one per 64 KiB. */
async function send(source: AsyncIterable<Buffer>, out: Writable): Promise<void> {
  const closed = new Promise<never>((_, reject) =>
    out.once('close', () => reject(new Error('client went away'))),
  );
  closed.catch(() => {});
  for await (const chunk of source) {
    const written = out.write(chunk, (err) => {
      if (!err) releaseChunk(chunk);
    });
    if (!written) await Promise.race([once(out, 'drain'), closed]);
  }
  out.end();
}

/**
 * gzip at the level the content deserves: fetch asks for gzip on every request (undici sends
 * `Accept-Encoding: gzip, deflate`), so every SDK read is compressed. Level 1 runs at over a
 * GB/s on text; on data that does not compress (archives, images, random bytes) it drops to
 * tens of MB/s for nothing, so those go out as stored blocks (level 0), judged by the first chunk.
 */
async function sendGzip(source: AsyncIterable<Buffer>, res: ServerResponse, type: string): Promise<void> {
  const it = source[Symbol.asyncIterator]();
  const first = await it.next();
  const sample = first.done ? undefined : first.value.subarray(0, 64 * 1024);
  const level = sample && deflateRawSync(sample, { level: 1 }).length > 0.9 * sample.length ? 0 : 1;
  res.writeHead(200, { 'Content-Encoding': 'gzip', 'Content-Type': type });
  const gzip = createGzip({ level });
  async function* all(): AsyncGenerator<Buffer> {
    try {
      if (!first.done) yield first.value;
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    } finally {
      await it.return?.(); // a client that left cancels the agent's read
    }
  }
  await Promise.all([send(all(), gzip), pipeline(gzip, res)]);
}

/**
 * GET /files (envd api/download.go): the file's bytes, gzip when the client accepts it, else
 * identity with Range and If-Modified-Since as Go's http.ServeContent answers them. 404
 * `path '<p>' does not exist`, 400 for a directory. Streamed end to end: the agent reads only
 * as fast as the client takes the bytes.
 */
export async function download(
  deps: EnvdDeps,
  req: IncomingMessage,
  res: ServerResponse,
  id: string,
): Promise<void> {
  try {
    const call = await filesCall(deps, req, id, 'read');
    const raw = call.query.get('path') ?? '';
    const path = call.resolve(raw);
    const info = await call.agent.stat(path, call.as).catch((err: unknown) => {
      if (isCoveError(err, 'not_found')) throw new HttpError(404, `path '${path}' does not exist`);
      throw err;
    });
    const type = info.type === 'symlink' ? info.targetType : info.type;
    if (type === 'dir') throw new HttpError(400, `path '${path}' is a directory`);
    if (type === undefined) throw new HttpError(404, `path '${path}' does not exist`); // a dangling link
    // A symlink's own stat is the link's: size and time are its target's (realpath, absolute).
    const file = info.type === 'symlink' ? await call.agent.stat(info.symlinkTarget ?? path, call.as) : info;
    const h = req.headers;
    const conditional = !!(h.range || h['if-modified-since'] || h['if-none-match'] || h['if-range']);
    const encoding = responseEncoding(h['accept-encoding'], conditional);
    res.setHeader('Vary', 'Accept-Encoding');
    res.setHeader('Content-Disposition', contentDisposition(posix.basename(path)));

    if (encoding === 'gzip')
      return await sendGzip(slice(call.agent.readFile(path, call.as), 0, file.size), res, contentTypeOf(raw));

    const size = file.size;
    const modified = Math.floor(file.mtimeMs / 1000) * 1000; // HTTP dates have seconds
    const lastModified = new Date(modified).toUTCString();
    res.setHeader('Last-Modified', lastModified);
    res.setHeader('Accept-Ranges', 'bytes');
    res.setHeader('Content-Type', contentTypeOf(raw));
    const since = Date.parse(h['if-modified-since'] ?? '');
    if (!h.range && !Number.isNaN(since) && modified <= since) {
      res.writeHead(304);
      return void res.end();
    }
    const ifRange = h['if-range'];
    const range: ByteRange | 'unsatisfiable' | undefined =
      h.range && (!ifRange || ifRange === lastModified) ? rangeOf(h.range, size) : undefined;
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'Content-Range': `bytes */${size}` });
      return void res.end();
    }
    const start = range?.start ?? 0;
    const length = range ? range.end - range.start + 1 : size;
    res.writeHead(range ? 206 : 200, {
      'Content-Length': String(length),
      ...(range && { 'Content-Range': `bytes ${range.start}-${range.end}/${size}` }),
    });
    if (length === 0 || req.method === 'HEAD') return void res.end();
    await send(slice(call.agent.readFile(path, call.as), start, length), res);
  } catch (err) {
    replyError(deps, res, err);
  }
}
