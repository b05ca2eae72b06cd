import { readFileSync } from 'node:fs';
import type { Audit } from '../audit/index.ts';
import { CoveError } from '../core/errors.ts';
import type { IdentityIssuer } from '../identity/issuer.ts';
import type { EgressCa } from '../network/egress-ca.ts';
import type { InterceptOptions } from '../network/egress-intercept.ts';
import type { SandboxNetwork } from '../network/egress-policy.ts';

/** Where a placeholder's value comes from: the host's SecretStore, or on a `cove node` the
 * cluster's replicas (src/cluster/node.ts), which are told the sandbox it is for. */
export interface SecretLookup {
  value(owner: string, name: string, sandboxId: string): string | Promise<string>;
}

/**
 * How the egress proxy resolves placeholders and whom it tells: `${e2b.secrets.<name>}` names
 * a secret of the key that set the rules (`network.secretsOwner`), read at each request (an
 * update or a deletion counts at once); `${e2b.identity.tokens.<name>}` a token the sandbox
 * registered at create (`network.identity`), minted for this request by src/identity. Every
 * request whose headers were set leaves a `network.inject` audit record with the domain, the
 * header, secret and token names and the outcome, never a value.
 */
export function secretInjection(deps: {
  ca: EgressCa;
  secrets: SecretLookup;
  audit: Audit;
  /** The sandbox at a bridge address, if one lives there. */
  sandboxAt: (address: string) => { id: string; templateName: string; network: SandboxNetwork } | undefined;
  /** Mints `${e2b.identity.tokens.<name>}`; none: such placeholders fail the request. */
  identity?: IdentityIssuer | undefined;
  /** COVE_EGRESS_TRUST_CA: a PEM file of more CAs to trust upstream. */
  trustFile?: string | undefined;
}): InterceptOptions {
  const trust = deps.trustFile ? [readFileSync(deps.trustFile, 'utf8')] : [];
  return {
    ca: deps.ca,
    trust,
    resolve(address, { kind, name }) {
      const sandbox = deps.sandboxAt(address);
      if (kind === 'identity') {
        const id = sandbox?.network.identity;
        const token = id && Object.hasOwn(id.tokens, name) ? id.tokens[name] : undefined;
        if (!sandbox || !id || !token || !deps.identity)
          throw new CoveError('not_found', `identity token ${name} not found`);
        const subject = {
          sandboxId: sandbox.id,
          templateId: sandbox.templateName,
          keyId: id.keyId,
          tokenName: name,
        };
        return deps.identity.mint(subject, token);
      }
      const owner = sandbox?.network.secretsOwner;
      if (!sandbox || !owner) throw new CoveError('not_found', `secret ${name} not found`);
      return deps.secrets.value(owner, name, sandbox.id);
    },
    record(address, event) {
      const sandbox = deps.sandboxAt(address);
      deps.audit.record({
        sandboxId: sandbox?.id ?? null,
        action: 'network.inject',
        outcome: event.outcome,
        keyId: sandbox?.network.secretsOwner ?? null,
        requestId: null,
        fields: {
          domain: event.domain,
          host: event.host,
          method: event.method,
          headers: event.headers,
          secrets: event.secrets,
          tokens: event.tokens,
        },
      });
    },
  };
}
