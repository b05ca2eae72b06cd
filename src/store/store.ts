/**
 * What Cove must not lose. Every state change of a sandbox is written here before it is
 * acknowledged; on start the manager reconciles this with what the host really runs.
 */
export type SandboxState = 'starting' | 'running' | 'paused' | 'killing';

export interface SandboxRecord {
  id: string;
  templateName: string;
  templateHash: string;
  state: SandboxState;
  /** Network slot; also picks the sandbox's host uid range. Unique among live sandboxes. */
  slot: number;
  agentToken: string;
  /** envd's X-Access-Token for this sandbox (E2B `secure`); absent: envd needs no token. */
  envdAccessToken?: string;
  limits: { cpus: number; memoryMiB: number; pids: number };
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  /** Epoch milliseconds. */
  startedAt: number;
  endAt: number;
}

export interface Store {
  /** Inserts with the lowest free slot (chosen in the same transaction) and returns it.
   * Throws CoveError('already_exists') for a duplicate id, 'resource_exhausted' when no slot is free. */
  insertSandbox(record: Omit<SandboxRecord, 'slot'>, maxSlots: number): SandboxRecord;
  getSandbox(id: string): SandboxRecord | undefined;
  listSandboxes(): SandboxRecord[];
  updateSandbox(id: string, patch: Partial<Pick<SandboxRecord, 'state' | 'endAt' | 'metadata'>>): void;
  deleteSandbox(id: string): void;
  close(): void;
}
