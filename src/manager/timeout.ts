import { CoveError } from '../core/errors.ts';

/** A sandbox timeout asked for, refused in E2B's words (infra timeout_helper.go), so that users see the same text. */
export function validateTimeout(timeoutMs: number, maxTimeoutMs: number): void {
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0)
    throw new CoveError('invalid_argument', 'Timeout must be greater than 0');
  if (timeoutMs > maxTimeoutMs)
    throw new CoveError(
      'invalid_argument',
      `Timeout cannot be greater than ${maxTimeoutMs / 3600_000} hours`,
    );
}
