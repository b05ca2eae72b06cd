import { DatabaseSync } from 'node:sqlite';
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

/** One key's own limits, over the configured `perKey` ones; `null` in a field: no limit of that kind. */
export interface QuotaOverride {
  requestsPerMinute?: number | null;
  tokensPerDay?: number | null;
}

/**
 * Per-key and per-sandbox quotas. Requests per minute are counted in a table of admissions
 * (`rate_events`, in services.db: a restart keeps the last minute); tokens per day are summed
 * from the usage ledger. A key may have its own limits (`quota_overrides`, set through
 * `PUT /cove/v1/quotas/<key id>` or `cove quota set`), which replace the configured per-key
 * ones field by field. A call over any limit is `resource_exhausted` (429).
 */
export function createQuotas(
  opts: { perKey: QuotaConfig; perSandbox: QuotaConfig; usage: Usage; db?: DatabaseSync },
  now: () => number = Date.now,
) {
  const db = opts.db ?? new DatabaseSync(':memory:');
  db.exec(`CREATE TABLE IF NOT EXISTS rate_events (scope TEXT NOT NULL, at INTEGER NOT NULL);
    CREATE INDEX IF NOT EXISTS rate_events_scope_at ON rate_events (scope, at);
    CREATE TABLE IF NOT EXISTS quota_overrides (key_id TEXT PRIMARY KEY, limits TEXT NOT NULL)`);
  const countSince = db.prepare('SELECT count(*) AS n FROM rate_events WHERE scope = ? AND at > ?');
  const insert = db.prepare('INSERT INTO rate_events (scope, at) VALUES (?, ?)');
  const prune = db.prepare('DELETE FROM rate_events WHERE at <= ?');
  const readOverride = db.prepare('SELECT * FROM quota_overrides WHERE key_id = ?');
  let admitted = 0;

  function checkRate(scope: string, limit: number | null | undefined, t: number): void {
    if (limit == null) return;
    const n = Number((countSince.get(scope, t - MINUTE) as { n: number | bigint }).n);
    if (n >= limit)
      throw new CoveError(
        'resource_exhausted',
        `quota exceeded: ${limit} requests per minute for ${scope}; retry later`,
      );
  }

  function checkTokens(
    kind: 'key' | 'sandbox',
    id: string,
    limit: number | null | undefined,
    t: number,
  ): void {
    if (limit == null) return;
    const used = opts.usage.tokensSince(kind, id, t - DAY);
    if (used >= limit)
      throw new CoveError(
        'resource_exhausted',
        `quota exceeded: ${used} of ${limit} tokens per day used by ${kind} ${id}`,
      );
  }

  function override(keyId: string): QuotaOverride | undefined {
    // JSON of the fields set: a field left out keeps the configured limit, null lifts it.
    const r = readOverride.get(keyId) as { limits: string } | undefined;
    return r && (JSON.parse(r.limits) as QuotaOverride);
  }

  /** The key's limits in force: its override's fields where set, else the configured ones. */
  function forKey(keyId: string): { requestsPerMinute: number | null; tokensPerDay: number | null } {
    const o = override(keyId);
    return {
      requestsPerMinute:
        o && o.requestsPerMinute !== undefined
          ? o.requestsPerMinute
          : (opts.perKey.requestsPerMinute ?? null),
      tokensPerDay: o && o.tokensPerDay !== undefined ? o.tokensPerDay : (opts.perKey.tokensPerDay ?? null),
    };
  }

  return {
    forKey,
    override,

    /** Counts one request, or throws when it would go over a quota. */
    admit(who: Principal, opts2: { tokens: boolean }): void {
      const t = now();
      const key = forKey(who.keyId);
      if (opts2.tokens) {
        checkTokens('key', who.keyId, key.tokensPerDay, t);
        if (who.sandboxId) checkTokens('sandbox', who.sandboxId, opts.perSandbox.tokensPerDay, t);
      }
      const scopes: Array<[string, number | null | undefined]> = [
        [`key ${who.keyId}`, key.requestsPerMinute],
      ];
      if (who.sandboxId) scopes.unshift([`sandbox ${who.sandboxId}`, opts.perSandbox.requestsPerMinute]);
      for (const [scope, limit] of scopes) checkRate(scope, limit, t);
      // Counted only once every check passed: a refused call does not use up the window.
      for (const [scope, limit] of scopes) if (limit != null) insert.run(scope, t);
      if (++admitted % 1000 === 0) prune.run(t - MINUTE);
    },

    /** Sets (replaces) a key's own limits; fields left out keep the configured ones, null lifts one. */
    setOverride(keyId: string, o: QuotaOverride): void {
      const limits = JSON.stringify({
        ...(o.requestsPerMinute !== undefined && { requestsPerMinute: o.requestsPerMinute }),
        ...(o.tokensPerDay !== undefined && { tokensPerDay: o.tokensPerDay }),
      });
      db.prepare('INSERT OR REPLACE INTO quota_overrides (key_id, limits) VALUES (?, ?)').run(keyId, limits);
    },

    clearOverride(keyId: string): void {
      db.prepare('DELETE FROM quota_overrides WHERE key_id = ?').run(keyId);
    },

    /** Drops the windows of sandboxes that are gone. */
    forget(sandboxId: string): void {
      db.prepare('DELETE FROM rate_events WHERE scope = ?').run(`sandbox ${sandboxId}`);
    },
  };
}

export type Quotas = ReturnType<typeof createQuotas>;
