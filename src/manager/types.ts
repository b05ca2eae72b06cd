import { OPEN_NETWORK, type SandboxNetwork } from '../network/egress-policy.ts';
import type {
  PausedAs,
  SandboxLifecycle,
  SandboxRecord,
  SandboxState,
  VolumeMountRecord,
} from '../store/store.ts';

export interface SandboxInfo {
  id: string;
  templateName: string;
  state: SandboxState;
  startedAt: Date;
  endAt: Date;
  metadata: Record<string, string>;
  limits: SandboxRecord['limits'];
  address: string;
  /** The runtime backend that runs it: 'crun' or 'runsc' (docs/runtimes.md). */
  runtime: string;
  /** envd's access token (E2B `secure` sandboxes); callers at the edge check it. */
  envdAccessToken?: string;
  /** Network settings (spec 2.11): egress enforced by the network, ingress by the gateway. */
  network: SandboxNetwork;
  /** What the port proxy wants in E2B-Traffic-Access-Token (allowPublicTraffic false). */
  trafficAccessToken?: string;
  lifecycle?: SandboxLifecycle;
  /** How a paused sandbox is kept (store.ts PausedAs): what its resume will bring back. */
  paused?: PausedAs;
  /** Volumes mounted into it (src/volumes); absent: none. */
  volumeMounts?: VolumeMountRecord[];
}

export interface CreateSandboxInput {
  template: string;
  timeoutMs: number;
  /** E2B `secure`: envd then requires this sandbox's access token. */
  secure?: boolean;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  /** The API key id that asked for it: runtime services count its sandbox against that key. */
  owner?: string;
  /** Validated network settings (src/network/egress-policy.ts parseNetwork); default open. */
  network?: SandboxNetwork;
  lifecycle?: SandboxLifecycle;
  /** Volumes to mount, resolved and checked at the edge (src/volumes/mount-paths.ts); never from a pool. */
  volumeMounts?: VolumeMountRecord[];
}

export function toInfo(record: SandboxRecord, address: string): SandboxInfo {
  return {
    id: record.id,
    templateName: record.templateName,
    state: record.state,
    startedAt: new Date(record.startedAt),
    endAt: new Date(record.endAt),
    metadata: record.metadata,
    limits: record.limits,
    address,
    runtime: record.runtime ?? 'crun',
    ...(record.envdAccessToken && { envdAccessToken: record.envdAccessToken }),
    network: record.network ?? OPEN_NETWORK,
    ...(record.trafficAccessToken && { trafficAccessToken: record.trafficAccessToken }),
    ...(record.lifecycle && { lifecycle: record.lifecycle }),
    ...(record.state === 'paused' && record.paused && { paused: record.paused }),
    ...(record.volumeMounts?.length && { volumeMounts: record.volumeMounts }),
  };
}
