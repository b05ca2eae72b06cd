import { CoveError } from '../core/errors.ts';

/**
 * Admission for sandbox builds: at most `concurrency` run at once (a crun create is CPU-bound:
 * more at once on a small host only makes every one slower), at most `queue` wait, and a
 * request beyond that is refused at once with resource_exhausted (HTTP 429, which the SDK
 * retries after Retry-After) rather than waiting without bound.
 */
export function createLimiter(opts: { concurrency: number; queue: number }) {
  let running = 0;
  const waiting: Array<() => void> = [];

  function release(): void {
    running--;
    const next = waiting.shift();
    if (next) {
      running++;
      next();
    }
  }

  return {
    async run<T>(fn: () => Promise<T>): Promise<T> {
      if (running >= opts.concurrency) {
        if (waiting.length >= opts.queue) {
          throw new CoveError('resource_exhausted', `too many sandboxes are being created; retry shortly`);
        }
        await new Promise<void>((resolve) => waiting.push(resolve));
      } else running++;
      try {
        return await fn();
      } finally {
        release();
      }
    },
    get pending(): number {
      return running + waiting.length;
    },
  };
}
