import { Code, ConnectError } from '@connectrpc/connect';
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
