import { create } from '@bufbuild/protobuf';
import type { HandlerContext } from '@connectrpc/connect';
import {
  type WatchDirRequest,
  type WatchDirResponse,
  WatchDirResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { toFilesystemEvent } from './events.ts';
import { type FsDeps, fsCall, serverStream } from './rpc.ts';

/** envd's default when the client names no `Keepalive-Ping-Interval` (permissions/keepalive.go). */
const DEFAULT_KEEPALIVE_S = 90;
const KEEPALIVE = Symbol('keepalive');

export function keepaliveMs(header: string | null): number {
  const s = /^\d{1,6}$/.test(header ?? '') ? Number(header) : DEFAULT_KEEPALIVE_S;
  return Math.max(1, s) * 1000;
}

/** The items of `source`, with KEEPALIVE whenever nothing came for `intervalMs`. */
export async function* withKeepalive<T>(
  source: AsyncIterable<T>,
  intervalMs: number,
): AsyncGenerator<T | typeof KEEPALIVE> {
  const it = source[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<T>> | undefined;
  for (;;) {
    if (!pending) {
      pending = it.next();
      pending.catch(() => {}); // a consumer that left during a keepalive must not see it fail
    }
    let timer: NodeJS.Timeout | undefined;
    const tick = new Promise<typeof KEEPALIVE>(
      (resolve) => (timer = setTimeout(resolve, intervalMs, KEEPALIVE)),
    );
    const r = await Promise.race([pending, tick]).finally(() => clearTimeout(timer));
    if (r === KEEPALIVE) {
      yield KEEPALIVE;
      continue;
    }
    pending = undefined;
    if (r.done) return;
    yield r.value;
  }
}

/**
 * WatchDir: `start` first, then one `filesystem` event per change (events.ts), keepalives while
 * idle. It ends when the client cancels or its `Connect-Timeout-Ms` passes (connect-node aborts
 * ctx.signal for both), when the sandbox goes, or with an error when the watched directory is
 * removed. Missing is not_found, not a directory invalid_argument. Cove's sandboxes have no
 * network mounts (no CAP_SYS_ADMIN to make one), so `allowNetworkMounts` changes nothing.
 */
export const watchDir = (deps: FsDeps) =>
  serverStream(deps, async function* (req: WatchDirRequest, ctx: HandlerContext) {
    const call = await fsCall(deps, ctx);
    const root = call.resolve(req.path);
    const watch = await call.agent.watch(root, { recursive: req.recursive }, call.as);
    // Closing ends the event stream, so the loop below returns even if nobody pulls again.
    const stop = (): void => void watch.close();
    ctx.signal.addEventListener('abort', stop, { once: true });
    try {
      yield create(WatchDirResponseSchema, { event: { case: 'start', value: {} } });
      const interval = keepaliveMs(ctx.requestHeader.get('keepalive-ping-interval'));
      for await (const item of withKeepalive(watch.events, interval)) {
        const response: WatchDirResponse =
          item === KEEPALIVE
            ? create(WatchDirResponseSchema, { event: { case: 'keepalive', value: {} } })
            : create(WatchDirResponseSchema, {
                event: {
                  case: 'filesystem',
                  value: await toFilesystemEvent(call, root, item, req.includeEntry),
                },
              });
        yield response;
      }
    } finally {
      ctx.signal.removeEventListener('abort', stop);
      await watch.close();
    }
  });
