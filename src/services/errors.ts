import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { CoveError, httpStatus, type ErrorCode } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** The `type` OpenAI and Anthropic clients read from an error body, per Cove error code. */
const errorType = {
  invalid_argument: 'invalid_request_error',
  not_found: 'not_found_error',
  already_exists: 'invalid_request_error',
  conflict: 'invalid_request_error',
  unauthenticated: 'authentication_error',
  permission_denied: 'permission_error',
  resource_exhausted: 'rate_limit_error',
  insufficient_storage: 'api_error',
  unavailable: 'api_error',
  deadline_exceeded: 'timeout_error',
  internal: 'api_error',
} as const satisfies Record<ErrorCode, string>;

/**
 * The services' error hook: the status from Cove's one table, the body in the shape the
 * caller's SDK parses — Anthropic's `{type:"error", error:{type, message}}` on /v1/messages,
 * OpenAI's `{error:{message, type, code}}` everywhere else.
 */
export function servicesErrorHandler(log: Logger) {
  return (err: Error, c: Context) => {
    let code: ErrorCode = 'internal';
    let message = 'internal error';
    if (err instanceof CoveError) {
      code = err.code;
      message = err.message;
    } else log.error({ err, path: c.req.path }, 'internal error in services');
    const status = httpStatus[code] as ContentfulStatusCode;
    if (code === 'resource_exhausted') c.header('Retry-After', '1');
    const type = errorType[code];
    if (c.req.path === '/v1/messages') return c.json({ type: 'error', error: { type, message } }, status);
    return c.json({ error: { message, type, code } }, status);
  };
}
