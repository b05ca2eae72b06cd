import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import { parseNetwork, type NetworkInput, type SandboxNetwork } from '../network/egress-policy.ts';
import { secretNames } from '../network/transform-rules.ts';
import type { IamTokens } from '../identity/iam.ts';
import type { SecretStore } from '../secrets/store.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { body, sandboxId } from './validate.ts';

/**
 * Header rules' secrets belong to the key that sets them: each `${e2b.secrets.<name>}` must
 * name one of its secrets now (a later deletion fails the request in the proxy instead), and
 * each `${e2b.identity.tokens.<name>}` a token the sandbox registered (`iam`, at create).
 */
function withSecretsOwner(
  network: SandboxNetwork,
  owner: string,
  secrets: SecretStore | undefined,
  tokens: IamTokens | undefined,
): SandboxNetwork {
  if (!network.rules) return network;
  for (const name of secretNames(network.rules, 'identity'))
    if (!tokens || !Object.hasOwn(tokens, name))
      throw new CoveError(
        'invalid_argument',
        `network.rules: no identity token named "${name}" (register it at create: iam.tokens.${name})`,
      );
  for (const name of secretNames(network.rules)) {
    if (!secrets) throw new CoveError('invalid_argument', 'network.rules: this server keeps no secrets');
    try {
      secrets.get(owner, name);
    } catch {
      throw new CoveError(
        'invalid_argument',
        `network.rules: no secret named "${name}" (create it with Secret.create)`,
      );
    }
  }
  return { ...network, secretsOwner: owner };
}

/**
 * The network settings of a create (spec 2.3: `allow_internet_access` beside `network`),
 * validated; CoveError('invalid_argument') names what is wrong and nothing is created.
 */
export function createNetwork(
  network: Record<string, unknown> | null | undefined,
  allowInternetAccess: boolean | undefined,
  secure: boolean,
  owner: { keyId: string; secrets?: SecretStore | undefined },
  iam?: IamTokens,
): SandboxNetwork | undefined {
  if (!network && allowInternetAccess !== false && !iam) return undefined;
  const parsed = withSecretsOwner(
    parseNetwork({ ...(network as NetworkInput | null), allowInternetAccess }),
    owner.keyId,
    owner.secrets,
    iam,
  );
  if (iam) parsed.identity = { tokens: iam, keyId: owner.keyId };
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
    const current = deps.manager.get(id);
    const { allowOut, denyOut, allowInternetAccess, rules, secretsOwner, egressProxy } = withSecretsOwner(
      parseNetwork({
        allowOut: req.allowOut,
        denyOut: req.denyOut,
        allowInternetAccess: req.allow_internet_access,
        rules: req.rules,
        egressProxy: req.egressProxy,
      }),
      c.get('keyId'),
      deps.secrets,
      current.network.identity?.tokens,
    );
    const egress = { allowOut, denyOut, allowInternetAccess, rules, secretsOwner, egressProxy };
    await deps.manager.updateNetwork(id, egress);
    deps.sandboxLog.append(id, 'info', 'network updated', {
      allowOut: allowOut.join(' '),
      denyOut: denyOut.join(' '),
      rules: Object.keys(rules ?? {}).join(' '),
      egressProxy: egressProxy?.address ?? '',
      apiKey: c.get('keyId'),
    });
    return c.body(null, 204);
  });
  return app;
}
