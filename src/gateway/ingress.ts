import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { SandboxInfo } from '../manager/manager.ts';
import type { GatewayBody } from './reply.ts';
import type { PortTarget } from './upstream.ts';

/** The header the SDK and E2B's proxy name (infra orchestrator/pkg/proxy). */
export const TRAFFIC_TOKEN_HEADER = 'e2b-traffic-access-token';

/**
 * What a sandbox's ingress settings (spec 2.11) make of a request to one of its ports, envd's
 * excepted (it has its own token): the 403 of upstream's proxy when the sandbox wants its
 * traffic access token (allowPublicTraffic false) and the request lacks it or carries another
 * (bodies as infra `traffic_access_token_error.go`), else where to send it: the Host to
 * present (`maskRequestHost` with `${PORT}` replaced) and whether the server speaks TLS
 * (`httpsPorts`).
 */
export function ingress(
  sandbox: SandboxInfo,
  port: number,
  headers: IncomingHttpHeaders,
): { denied: GatewayBody } | { target: PortTarget } {
  const expected = sandbox.trafficAccessToken;
  if (expected !== undefined) {
    const given = headers[TRAFFIC_TOKEN_HEADER];
    if (typeof given !== 'string' || given === '')
      return { denied: tokenError(sandbox.id, `Token header '${TRAFFIC_TOKEN_HEADER}' is missing`) };
    const a = Buffer.from(given);
    const b = Buffer.from(expected);
    if (a.length !== b.length || !timingSafeEqual(a, b))
      return {
        denied: tokenError(sandbox.id, `Provided token in header '${TRAFFIC_TOKEN_HEADER}' is invalid`),
      };
  }
  const mask = sandbox.network.maskRequestHost;
  return {
    target: {
      sandboxId: sandbox.id,
      address: sandbox.address,
      port,
      ...(mask !== undefined && { host: mask.replaceAll('${PORT}', String(port)) }),
      ...(sandbox.network.httpsPorts.includes(port) && { tls: true }),
    },
  };
}

const tokenError = (sandboxId: string, what: string): GatewayBody => ({
  sandboxId,
  message: `Sandbox is secured with traffic access token. ${what}`,
});
