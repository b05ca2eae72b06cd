import { pino, type Logger } from 'pino';

export type { Logger };

/** JSON lines on stderr; `COVE_LOG_LEVEL` is read by config and passed here. */
export function createLogger(level: string): Logger {
  return pino({ level, base: undefined }, pino.destination(2));
}
