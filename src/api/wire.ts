import type { SandboxInfo } from '../manager/manager.ts';

/**
 * The envd version Cove reports in create, connect and info replies. The SDK learns what
 * envd can do only from this field (spec 3.7) and turns features off below their gate:
 * 0.1.0 create at all, 0.1.4 recursive watch, 0.1.5 metrics, 0.2.4 disk metrics, 0.3.0
 * `stdin:false`, 0.4.0 the template's default user, 0.5.2 closeStdin, 0.5.7 octet-stream
 * uploads, 0.6.2 file metadata, 0.6.3 entries in watch events, 0.6.4 watches on network
 * mounts. Cove's envd serves every one of them (src/envd, on the agent's watches and file
 * ops), so it reports upstream's envd version, as the spec recommends. Lower it when a
 * gate's feature is withdrawn: the SDK then refuses the call with a clear TemplateError.
 */
export const ENVD_VERSION = '0.6.13';

/** E2B's `clientID` is deprecated and required by the schema: any constant does. */
const CLIENT_ID = 'cove';

/** What the wire calls a sandbox's state: `starting` is only ever seen inside Cove. */
function wireState(s: SandboxInfo): 'running' | 'paused' {
  return s.state === 'paused' ? 'paused' : 'running';
}

/** The create and connect reply, `Sandbox` (spec 2.3). */
export function sandboxReply(s: SandboxInfo, domain: string | null) {
  return {
    sandboxID: s.id,
    templateID: s.templateName,
    alias: s.templateName,
    clientID: CLIENT_ID,
    envdVersion: ENVD_VERSION,
    ...(s.envdAccessToken && { envdAccessToken: s.envdAccessToken }),
    trafficAccessToken: s.trafficAccessToken ?? null,
    domain,
  };
}

/** One element of the list reply, `ListedSandbox` (spec 2.6). */
export function listedSandbox(s: SandboxInfo, diskSizeMB: number) {
  return {
    sandboxID: s.id,
    templateID: s.templateName,
    alias: s.templateName,
    clientID: CLIENT_ID,
    metadata: s.metadata,
    startedAt: s.startedAt.toISOString(),
    endAt: s.endAt.toISOString(),
    state: wireState(s),
    cpuCount: s.limits.cpus,
    memoryMB: s.limits.memoryMiB,
    diskSizeMB,
    envdVersion: ENVD_VERSION,
    volumeMounts: (s.volumeMounts ?? []).map(({ name, path }) => ({ name, path })),
    /** Cove's own: the runtime backend (crun, runsc) that isolates it (docs/runtimes.md). */
    runtime: s.runtime,
  };
}

/** The get-info reply, `SandboxDetail` (spec 2.5). */
export function sandboxDetail(s: SandboxInfo, diskSizeMB: number, domain: string | null) {
  return {
    ...listedSandbox(s, diskSizeMB),
    ...(s.envdAccessToken && { envdAccessToken: s.envdAccessToken }),
    allowInternetAccess: s.network.allowInternetAccess,
    network: {
      allowOut: s.network.allowOut,
      denyOut: s.network.denyOut,
      allowPublicTraffic: s.network.allowPublicTraffic,
      ...(s.network.maskRequestHost !== undefined && { maskRequestHost: s.network.maskRequestHost }),
      httpsPorts: s.network.httpsPorts,
      // As given: placeholders stay placeholders (values are resolved only in the egress proxy).
      ...(s.network.rules && { rules: s.network.rules }),
      // Never the password (spec 2.11).
      ...(s.network.egressProxy && {
        egressProxy: {
          address: s.network.egressProxy.address,
          ...(s.network.egressProxy.username !== undefined && { username: s.network.egressProxy.username }),
        },
      }),
    },
    lifecycle: { onTimeout: s.lifecycle?.onTimeout ?? 'kill', autoResume: s.lifecycle?.autoResume ?? false },
    domain,
  };
}
