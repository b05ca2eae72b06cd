import { CoveError } from '../core/errors.ts';
import type { QuotaConfig } from './config.ts';
import type { Usage } from './usage.ts';

const MINUTE = 60_000;
const DAY = 24 * 3600_000;

/** Who is calling: an API key holder on Cove's port, or a sandbox (counted against its key too). */
export interface Principal {
  keyId: string;
  sandboxId?: string;
}

/**
 * Per-key and per-sandbox quotas. Requests per minute are counted in memory (a restart forgets
 * the last minute, which a minute's window barely notices); tokens per day are summed from the
 * usage ledger, so they survive restarts. A call over either limit is `resource_exhausted` (429).
 */
export function createQuotas(
  opts: { perKey: QuotaConfig; perSandbox: QuotaConfig; usage: Usage },
  now: () => number = Date.now,
) {
  const recent = new Map<string, number[]>();

  function checkRate(scope: string, limit: number | undefined, t: number): void {
    if (limit === undefined) return;
    const times = (recent.get(scope) ?? []).filter((at) => at > t - MINUTE);
    if (times.length >= limit) {
      recent.set(scope, times);
      throw new CoveError(
        'resource_exhausted',
        `quota exceeded: ${limit} requests per minute for ${scope}; retry later`,
      );
    }
    times.push(t);
    recent.set(scope, times);
  }

  function checkTokens(kind: 'key' | 'sandbox', id: string, limit: number | undefined, t: number): void {
    if (limit === undefined) return;
    const used = opts.usage.tokensSince(kind, id, t - DAY);
    if (used >= limit)
      throw new CoveError(
        'resource_exhausted',
        `quota exceeded: ${used} of ${limit} tokens per day used by ${kind} ${id}`,
      );
  }

  return {
    /** Counts one request, or throws when it would go over a quota. */
    admit(who: Principal, opts2: { tokens: boolean }): void {
      const t = now();
      if (opts2.tokens) {
        checkTokens('key', who.keyId, opts.perKey.tokensPerDay, t);
        if (who.sandboxId) checkTokens('sandbox', who.sandboxId, opts.perSandbox.tokensPerDay, t);
      }
      if (who.sandboxId) checkRate(`sandbox ${who.sandboxId}`, opts.perSandbox.requestsPerMinute, t);
      checkRate(`key ${who.keyId}`, opts.perKey.requestsPerMinute, t);
    },

    /** Drops the windows of sandboxes that are gone. */
    forget(sandboxId: string): void {
      recent.delete(`sandbox ${sandboxId}`);
    },
  };
}

export type Quotas = ReturnType<typeof createQuotas>;
