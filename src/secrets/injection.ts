import { readFileSync } from 'node:fs';
import type { Audit } from '../audit/index.ts';
import { CoveError } from '../core/errors.ts';
import type { EgressCa } from '../network/egress-ca.ts';
import type { InterceptOptions } from '../network/egress-intercept.ts';
import type { SandboxNetwork } from '../network/egress-policy.ts';
import type { SecretStore } from './store.ts';

/**
 * How the egress proxy resolves `${e2b.secrets.<name>}` and whom it tells: a placeholder of a
 * sandbox's rules names a secret of the key that set the rules (`network.secretsOwner`),
 * read at each request (an update or a deletion counts at once); every request whose headers
 * were set leaves a `network.inject` audit record with the domain, the header and secret
 * names and the outcome, never a value.
 */
export function secretInjection(deps: {
  ca: EgressCa;
  secrets: SecretStore;
  audit: Audit;
  /** The sandbox at a bridge address, if one lives there. */
  sandboxAt: (address: string) => { id: string; network: SandboxNetwork } | undefined;
  /** COVE_EGRESS_TRUST_CA: a PEM file of more CAs to trust upstream. */
  trustFile?: string | undefined;
}): InterceptOptions {
  const trust = deps.trustFile ? [readFileSync(deps.trustFile, 'utf8')] : [];
  return {
    ca: deps.ca,
    trust,
    secret(address, name) {
      const owner = deps.sandboxAt(address)?.network.secretsOwner;
      if (!owner) throw new CoveError('not_found', `secret ${name} not found`);
      return deps.secrets.value(owner, name);
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
        },
      });
    },
  };
}
