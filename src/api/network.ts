import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';

const nonEmpty = (v: unknown) =>
  Array.isArray(v) ? v.length > 0 : typeof v === 'object' && v !== null && Object.keys(v).length > 0;

/**
 * Why Cove cannot honour a `SandboxNetworkConfig` (spec 2.11), or undefined when it does
 * what was asked already: sandboxes reach the internet, nothing else is enforced yet.
 * Anything that would restrict or rewrite traffic is refused rather than ignored, so that
 * nobody believes a sandbox is fenced in when it is not. `allowOut` alone, `maskRequestHost`
 * and `httpsPorts` change nothing while every destination is allowed and no port is proxied.
 */
export function unsupportedNetwork(network: Record<string, unknown>): string | undefined {
  const refused = (what: string) =>
    `network.${what}: Cove cannot restrict or rewrite a sandbox’s traffic yet`;
  if (nonEmpty(network.denyOut)) return refused('denyOut');
  if (nonEmpty(network.rules)) return refused('rules');
  if (network.egressProxy != null) return refused('egressProxy');
  if (network.allowPublicTraffic === false) return refused('allowPublicTraffic=false');
  return undefined;
}

const updateSchema = z.looseObject({ allow_internet_access: z.boolean().optional() });

/** `PUT /sandboxes/{id}/network`: accepted only when it leaves the sandbox as open as it is. */
export function networkRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.put('/sandboxes/:id/network', async (c) => {
    const id = sandboxId(c);
    const req = await body(c, updateSchema);
    deps.manager.get(id);
    const unsupported =
      req.allow_internet_access === false
        ? 'allow_internet_access=false: Cove cannot restrict a sandbox’s egress yet'
        : unsupportedNetwork(req);
    if (unsupported) throw new CoveError('invalid_argument', unsupported);
    return c.body(null, 204);
  });
  return app;
}
