// The API's replies as the console reads them (spec 2.6, 2.12, 2.13; /cove/v1 routes).

export interface Sandbox {
  sandboxID: string;
  templateID: string;
  state: 'running' | 'paused';
  startedAt: string;
  endAt: string;
  cpuCount: number;
  memoryMB: number;
  metadata: Record<string, string>;
  runtime?: string;
}

export interface Metric {
  timestampUnix: number;
  cpuUsedPct: number;
  memUsed: number;
  memTotal: number;
  diskUsed: number;
  diskTotal: number;
}

export interface LogEntry {
  timestamp: string;
  level: string;
  message: string;
  fields: Record<string, string>;
}

export interface AuditEvent {
  seq: number;
  at: number;
  action: string;
  outcome: string;
  keyId: string | null;
  requestId: string | null;
  fields: Record<string, unknown>;
}

export interface Template {
  name: string;
  tag: string;
  source: string;
  build: string;
  builtAt: string;
  diskBytes: number;
}

export interface ApiKey {
  id: string;
  name: string;
  mask: string;
  createdAt: number;
  lastUsedAt?: number;
  createdBy?: string;
  /** The key this console is signed in with. */
  current: boolean;
}

/** `GET /cove/v1/host`: the server's own type (type-only, nothing of it is bundled). */
export type { HostHealth } from '../../../metrics/host.ts';

/** `GET /cove/v1/builds` (src/api/builds.ts). */
export interface Build {
  buildID: string;
  templateID: string;
  tags: string[];
  status: 'waiting' | 'building' | 'ready' | 'error';
  createdAt: string;
  finishedAt?: string;
  reason?: string;
}

/** A build's log line, as E2B's build status route gives it (spec 2.15). */
export interface BuildLogEntry {
  timestamp: string;
  level: string;
  message: string;
  step?: string;
}
