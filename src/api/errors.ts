import type { Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { CoveError, httpStatus } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

/** The one error hook of the HTTP API: E2B's body `{code, message}` with the table's status. */
export function errorHandler(log: Logger) {
  return (err: Error, c: Context) => {
    if (err instanceof CoveError) {
      const status = httpStatus[err.code] as ContentfulStatusCode;
      // The SDK retries a 429 only when Retry-After is a whole number of seconds.
      if (err.code === 'resource_exhausted') c.header('Retry-After', '1');
      return c.json({ code: status, message: err.message }, status);
    }
    log.error({ err, path: c.req.path }, 'internal error');
    return c.json({ code: 500, message: 'internal error' }, 500);
  };
}
