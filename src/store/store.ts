import type { SandboxNetwork } from '../network/egress-policy.ts';

/**
 * What Cove must not lose. Every state change of a sandbox is written here before it is
 * acknowledged; on start the manager reconciles this with what the host really runs.
 */
/** `pooled`: created ahead of demand, not yet claimed: invisible to users, removed (not
 * adopted) by reconcile, since nobody is waiting for it. */
export type SandboxState = 'starting' | 'pooled' | 'running' | 'paused' | 'killing';

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
  /** The runtime backend that runs it (src/runtime/set.ts); absent in records older than that: crun. */
  runtime?: string;
  /** Network settings (spec 2.11); absent: the defaults, internet open, public traffic allowed. */
  network?: SandboxNetwork;
  /** E2B-Traffic-Access-Token the port proxy wants (allowPublicTraffic false). */
  trafficAccessToken?: string;
  limits: { cpus: number; memoryMiB: number; pids: number };
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  /** Epoch milliseconds. */
  startedAt: number;
  endAt: number;
  /** What happens at endAt, and whether traffic wakes it once paused (E2B `lifecycle`). */
  lifecycle?: SandboxLifecycle;
  /** How a `paused` sandbox is kept (src/manager/pause.ts). */
  paused?: PausedAs;
  /** Volumes mounted into it (E2B `volumeMounts`, src/volumes): mounted again at every boot. */
  volumeMounts?: VolumeMountRecord[];
}

/** One volume in one sandbox: the name the caller gave, the path inside, the volume's id. */
export interface VolumeMountRecord {
  name: string;
  path: string;
  volumeId: string;
}

/** E2B's autoPause, autoPauseMemory and autoResume; `timeoutMs` is what an auto-resume grants. */
export interface SandboxLifecycle {
  onTimeout: 'kill' | 'pause';
  keepMemory: boolean;
  autoResume: boolean;
  timeoutMs: number;
}

/**
 * `frozen`: its processes stopped in place (cgroup freezer), lasting while the host is up;
 * `filesystem`: only its writable layer kept on disk, processes gone (a resume reboots it);
 * `memory`: a checkpoint image of its memory beside the writable layer (a resume restores it).
 */
export type PausedAs = 'frozen' | 'filesystem' | 'memory';

/** A sandbox's writable layer copied aside, to create sandboxes from (E2B snapshots). */
export interface SnapshotRecord {
  id: string;
  /** E2B snapshot names; Cove keeps at most one, given at creation. */
  name?: string;
  sandboxId: string;
  templateName: string;
  templateHash: string;
  /** The host uid that root of the source sandbox mapped to: its files' owners are shifted from it. */
  uidBase: number;
  limits: SandboxRecord['limits'];
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  sizeBytes: number;
  /** Epoch milliseconds. */
  createdAt: number;
  /** The source's volumes: a sandbox created from it mounts them again unless it names its own. */
  volumeMounts?: VolumeMountRecord[];
}

/**
 * An API key as the store keeps it: only a hash of the secret, never the secret itself.
 * `mask` is the key's first characters (`e2b_1a2b…`) so that a list can be matched to keys
 * people hold; it reveals 16 of the key's 160 random bits.
 */
export interface ApiKeyRecord {
  id: string;
  name: string;
  /** sha256 of the whole key, hex. */
  hash: string;
  mask: string;
  /** Epoch milliseconds. */
  createdAt: number;
  lastUsedAt?: number;
  /** The key that minted this one through the API (`POST /cove/v1/keys`); revoking that key
   * revokes this one too, so a leaked key cannot outlive its revocation through keys it made. */
  createdBy?: string;
}

export interface Store {
  /** Inserts with the lowest free slot (chosen in the same transaction) and returns it.
   * Throws CoveError('already_exists') for a duplicate id, 'resource_exhausted' when no slot is free. */
  insertSandbox(record: Omit<SandboxRecord, 'slot'>, maxSlots: number): SandboxRecord;
  getSandbox(id: string): SandboxRecord | undefined;
  listSandboxes(): SandboxRecord[];
  updateSandbox(
    id: string,
    patch: Partial<
      Pick<SandboxRecord, 'state' | 'endAt' | 'metadata' | 'envVars' | 'startedAt' | 'envdAccessToken'>
    > &
      Partial<Pick<SandboxRecord, 'network' | 'trafficAccessToken'>> & {
        paused?: PausedAs | null;
        lifecycle?: SandboxLifecycle;
      },
  ): void;
  deleteSandbox(id: string): void;

  /** Throws CoveError('already_exists') when the id or the name is taken. */
  insertSnapshot(record: SnapshotRecord): void;
  /** By id or by name. */
  getSnapshot(idOrName: string): SnapshotRecord | undefined;
  /** Oldest first. */
  listSnapshots(): SnapshotRecord[];
  /** False when there was no such snapshot. */
  deleteSnapshot(id: string): boolean;

  /** Throws CoveError('already_exists') when the id or the hash is taken. */
  insertApiKey(record: ApiKeyRecord): void;
  apiKeyByHash(hash: string): ApiKeyRecord | undefined;
  /** Oldest first. */
  listApiKeys(): ApiKeyRecord[];
  touchApiKey(id: string, at: number): void;
  /** False when there was no such key. */
  deleteApiKey(id: string): boolean;

  close(): void;
}
