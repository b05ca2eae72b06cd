import { type Readable, finished } from 'node:stream';

/** Bytes queued ahead of the consumer before the stream is paused (four agent frames). */
const HIGH_WATER = 256 << 10;

/**
 * A Readable's chunks as an async iterable, taken through 'data' events. A Readable's own
 * async iterator goes through 'readable' + read() and a promise per chunk, which measured
 * ~25 ms per 64 MiB upload on the server's event loop (src/envd/files/README.md); here a chunk
 * is handed over as it arrives. Backpressure stays: above HIGH_WATER queued bytes the stream
 * is paused and resumes as the consumer takes chunks. The stream's error or a premature close
 * ends the iteration with that error (as `failed` maps it); a consumer that stops early leaves
 * the rest to drain.
 */
export function chunksOf(
  stream: Readable,
  failed: (err: Error) => Error = (err) => err,
  highWater = HIGH_WATER,
): AsyncIterableIterator<Buffer> {
  const queue: Buffer[] = [];
  let queued = 0;
  let ended = false;
  let failure: Error | undefined;
  let wake: (() => void) | undefined;
  const signal = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const onData = (chunk: Buffer): void => {
    queue.push(chunk);
    queued += chunk.length;
    if (queued >= highWater) stream.pause();
    signal();
  };
  stream.on('data', onData);
  const cleanup = finished(stream, (err) => {
    if (err) failure = failed(err);
    ended = true;
    signal();
  });
  const iterator: AsyncIterableIterator<Buffer> = {
    [Symbol.asyncIterator]: () => iterator,
    async next(): Promise<IteratorResult<Buffer>> {
      for (;;) {
        if (queue.length > 0) {
          const value = queue.shift()!;
          queued -= value.length;
          if (queued < highWater && !ended && stream.isPaused()) stream.resume();
          return { value, done: false };
        }
        if (failure) throw failure;
        if (ended) return { value: undefined, done: true };
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
    return(): Promise<IteratorResult<Buffer>> {
      // Stopped early: what is left flows on unread, so a multipart parser reaches the next
      // part (or the end) and the request can finish.
      stream.off('data', onData);
      cleanup();
      stream.on('error', () => {});
      queue.length = 0;
      stream.resume();
      return Promise.resolve({ value: undefined, done: true });
    },
  };
  return iterator;
}
