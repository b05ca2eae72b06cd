import { Code, ConnectError, type HandlerContext } from '@connectrpc/connect';
import { CoveError, connectCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

const codes: Record<(typeof connectCode)[keyof typeof connectCode], Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  aborted: Code.Aborted,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  resource_exhausted: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  deadline_exceeded: Code.DeadlineExceeded,
  internal: Code.Internal,
};

/** The one error hook of envd's RPCs: CoveError → its Connect code; anything else is
 * internal, logged once, and answered without detail. ConnectErrors pass through. */
export function toConnectError(err: unknown, log: Logger): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof CoveError) return new ConnectError(err.message, codes[connectCode[err.code]]);
  log.error({ err }, 'internal error in envd');
  return new ConnectError('internal error', Code.Internal);
}

/** Every unary handler goes through the one error hook, so nothing internal leaks. */
export function unary<I, O>(
  deps: { log: Logger },
  fn: (req: I, ctx: HandlerContext) => Promise<O>,
): (req: I, ctx: HandlerContext) => Promise<O> {
  return async (req, ctx) => {
    try {
      return await fn(req, ctx);
    } catch (err) {
      throw toConnectError(err, deps.log);
    }
  };
}

/** The same for server streams: an error before or after the first event ends the stream. */
export function serverStream<I, O>(
  deps: { log: Logger },
  fn: (req: I, ctx: HandlerContext) => AsyncIterable<O>,
): (req: I, ctx: HandlerContext) => AsyncIterable<O> {
  return async function* (req, ctx) {
    try {
      yield* fn(req, ctx);
    } catch (err) {
      throw toConnectError(err, deps.log);
    }
  };
}
