import { pino, type Logger } from 'pino';
import { currentRequest } from './request-context.ts';

export type { Logger };

/** JSON lines on stderr; `COVE_LOG_LEVEL` is read by config and passed here. Every line made
 * while serving a request carries its id (`reqId`), however deep the code that logs it. */
export function createLogger(level: string): Logger {
  return pino(
    {
      level,
      base: undefined,
      mixin: () => {
        const request = currentRequest();
        return request ? { reqId: request.requestId } : {};
      },
    },
    pino.destination(2),
  );
}
