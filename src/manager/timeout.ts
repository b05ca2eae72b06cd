import { CoveError } from '../core/errors.ts';
import type { Store } from '../store/store.ts';
import type { Live } from './live.ts';
import type { SandboxInfo } from './types.ts';

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

/** Setting and extending a sandbox's end time; `schedule` re-arms its timer. */
export function timeoutMethods(deps: {
  store: Store;
  find: (id: string) => Live;
  schedule: (entry: Live) => void;
  info: (record: Live['record']) => SandboxInfo;
  maxTimeoutMs: number;
}) {
  const { store, find, schedule, info } = deps;
  const moveEnd = (entry: Live, endAt: number) => {
    store.updateSandbox(entry.record.id, { endAt });
    entry.record.endAt = endAt;
    schedule(entry);
  };
  return {
    setTimeout(id: string, timeoutMs: number): SandboxInfo {
      validateTimeout(timeoutMs, deps.maxTimeoutMs);
      const entry = find(id);
      moveEnd(entry, Date.now() + timeoutMs);
      return info(entry.record);
    },

    /**
     * E2B's connect and refresh: the end time only ever moves later (spec 2.4). When it would
     * not, nothing is written and endAt stays exactly as it was (the SDK compares it to the ms).
     */
    extendTimeout(id: string, timeoutMs: number): SandboxInfo {
      validateTimeout(timeoutMs, deps.maxTimeoutMs);
      const entry = find(id);
      const endAt = Date.now() + timeoutMs;
      if (endAt > entry.record.endAt) moveEnd(entry, endAt);
      return info(entry.record);
    },
  };
}
