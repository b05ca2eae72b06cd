import { createAuditStore, type AuditInput, type AuditOptions, type AuditStore } from './store.ts';

export type { AuditEvent, AuditInput, AuditQuery, AuditValue } from './store.ts';

/**
 * The one function the rest of Cove calls to leave a record: `audit.record({ sandboxId,
 * action, outcome?, fields? })`, synchronously, before acknowledging what it records
 * (README.md). The request's key and id are added from the request context. With the audit
 * trail off (COVE_AUDIT=off) it does nothing and `store` is undefined.
 */
export interface Audit {
  record(input: AuditInput): void;
  readonly store?: AuditStore;
}

/** The audit trail turned off (and the default where none is wired, as in unit tests). */
export const noAudit: Audit = { record() {} };

export interface AuditConfig extends AuditOptions {
  enabled: boolean;
  /** Bytes of each process's stdout and stderr kept in its `process.end` record; 0: none. */
  outputBytes: number;
}

export function createAudit(path: string, config: AuditConfig): Audit {
  if (!config.enabled) return noAudit;
  const store = createAuditStore(path, config);
  return {
    store,
    record(input) {
      store.record(input);
    },
  };
}
