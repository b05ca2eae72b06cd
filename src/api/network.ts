import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import { parseNetwork, type NetworkInput, type SandboxNetwork } from '../network/egress-policy.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';

const nonEmpty = (v: unknown) =>
  Array.isArray(v) ? v.length > 0 : typeof v === 'object' && v !== null && Object.keys(v).length > 0;

/**
 * What of a `SandboxNetworkConfig` (spec 2.11) Cove cannot honour, or undefined. Header
 * transforms (`rules`) would need the egress proxy to terminate TLS, and a sandbox's own
 * SOCKS5 proxy (`egressProxy`) is not served: both are refused rather than ignored, so that
 * nobody believes traffic is rewritten or routed when it is not.
 */
function unsupportedNetwork(network: Record<string, unknown>): string | undefined {
  if (nonEmpty(network.rules))
    return 'network.rules: header transforms in the egress proxy are not supported by Cove yet';
  if (network.egressProxy != null)
    return 'network.egressProxy: Cove does not route egress through a SOCKS5 proxy';
  return undefined;
}

/**
 * The network settings of a create (spec 2.3: `allow_internet_access` beside `network`),
 * validated; CoveError('invalid_argument') names what is wrong and nothing is created.
 */
export function createNetwork(
  network: Record<string, unknown> | null | undefined,
  allowInternetAccess: boolean | undefined,
  secure: boolean,
): SandboxNetwork | undefined {
  if (!network && allowInternetAccess !== false) return undefined;
  const unsupported = network && unsupportedNetwork(network);
  if (unsupported) throw new CoveError('invalid_argument', unsupported);
  const parsed = parseNetwork({ ...(network as NetworkInput | null), allowInternetAccess });
  // Upstream's rule: the traffic token is handed out beside envd's, to secure sandboxes only.
  if (!parsed.allowPublicTraffic && !secure)
    throw new CoveError(
      'invalid_argument',
      'network.allowPublicTraffic=false needs a secure sandbox (secure: true)',
    );
  return parsed;
}

const updateSchema = z.looseObject({ allow_internet_access: z.boolean().optional() });

/**
 * `PUT /sandboxes/{id}/network`: replaces the egress settings; omitted fields are cleared
 * (spec 2.11). Applies to the sandbox's new connections; open ones keep going.
 */
export function networkRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.put('/sandboxes/:id/network', async (c) => {
    const id = sandboxId(c);
    const req = await body(c, updateSchema);
    deps.manager.get(id);
    const unsupported = unsupportedNetwork(req);
    if (unsupported) throw new CoveError('invalid_argument', unsupported);
    const { allowOut, denyOut, allowInternetAccess } = parseNetwork({
      allowOut: req.allowOut,
      denyOut: req.denyOut,
      allowInternetAccess: req.allow_internet_access,
    });
    await deps.manager.updateNetwork(id, { allowOut, denyOut, allowInternetAccess });
    deps.sandboxLog.append(id, 'info', 'network updated', {
      allowOut: allowOut.join(' '),
      denyOut: denyOut.join(' '),
      apiKey: c.get('keyId'),
    });
    return c.body(null, 204);
  });
  return app;
}
