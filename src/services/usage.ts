import type { DatabaseSync } from 'node:sqlite';

/** One call's tokens as the upstream reported them (zero when it reported none). */
export interface UsageEntry {
  at: number;
  keyId: string;
  sandboxId?: string;
  service: 'models' | 'memory' | 'search';
  model?: string;
  provider?: string;
  inputTokens: number;
  outputTokens: number;
  status: number;
}

export interface UsageSummary {
  requests: number;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
  byModel: Array<{ model: string; requests: number; inputTokens: number; outputTokens: number }>;
}

/** The ledger of service calls: quotas read it (tokens per day), the usage API sums it. */
export function createUsage(db: DatabaseSync) {
  db.exec(`
    CREATE TABLE IF NOT EXISTS usage (
      id INTEGER PRIMARY KEY,
      at INTEGER NOT NULL,
      key_id TEXT NOT NULL,
      sandbox_id TEXT,
      service TEXT NOT NULL,
      model TEXT,
      provider TEXT,
      input_tokens INTEGER NOT NULL,
      output_tokens INTEGER NOT NULL,
      status INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS usage_key_at ON usage (key_id, at);
    CREATE INDEX IF NOT EXISTS usage_sandbox_at ON usage (sandbox_id, at);
  `);
  const insert = db.prepare(
    `INSERT INTO usage (at, key_id, sandbox_id, service, model, provider, input_tokens, output_tokens, status)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const tokensSince = {
    key: db.prepare(
      'SELECT COALESCE(SUM(input_tokens + output_tokens), 0) AS n FROM usage WHERE key_id = ? AND at >= ?',
    ),
    sandbox: db.prepare(
      'SELECT COALESCE(SUM(input_tokens + output_tokens), 0) AS n FROM usage WHERE sandbox_id = ? AND at >= ?',
    ),
  };
  const summary = {
    key: db.prepare(`SELECT COALESCE(model, service) AS model, COUNT(*) AS requests,
      SUM(input_tokens) AS input, SUM(output_tokens) AS output FROM usage
      WHERE key_id = ? AND at >= ? GROUP BY 1 ORDER BY 1`),
    sandbox: db.prepare(`SELECT COALESCE(model, service) AS model, COUNT(*) AS requests,
      SUM(input_tokens) AS input, SUM(output_tokens) AS output FROM usage
      WHERE sandbox_id = ? AND at >= ? GROUP BY 1 ORDER BY 1`),
  };

  return {
    record(e: UsageEntry): void {
      insert.run(
        e.at,
        e.keyId,
        e.sandboxId ?? null,
        e.service,
        e.model ?? null,
        e.provider ?? null,
        e.inputTokens,
        e.outputTokens,
        e.status,
      );
    },

    tokensSince(scope: 'key' | 'sandbox', id: string, since: number): number {
      return Number((tokensSince[scope].get(id, since) as { n: number | bigint }).n);
    },

    summary(scope: 'key' | 'sandbox', id: string, since = 0): UsageSummary {
      const rows = summary[scope].all(id, since) as Array<{
        model: string;
        requests: number;
        input: number;
        output: number;
      }>;
      const byModel = rows.map((r) => ({
        model: r.model,
        requests: Number(r.requests),
        inputTokens: Number(r.input),
        outputTokens: Number(r.output),
      }));
      const sum = (f: (r: (typeof byModel)[number]) => number) => byModel.reduce((n, r) => n + f(r), 0);
      const inputTokens = sum((r) => r.inputTokens);
      const outputTokens = sum((r) => r.outputTokens);
      return {
        requests: sum((r) => r.requests),
        inputTokens,
        outputTokens,
        totalTokens: inputTokens + outputTokens,
        byModel,
      };
    },
  };
}

export type Usage = ReturnType<typeof createUsage>;
