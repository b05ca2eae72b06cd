import { join } from 'node:path';
import type { Config } from '../config/config.ts';
import { loadIdentityIssuer } from '../identity/issuer.ts';
import { loadEgressCa } from '../network/egress-ca.ts';
import { SecretStore } from './store.ts';

/**
 * What keeps credentials out of sandboxes, opened at start from the instance home: the secrets
 * (their key lives beside them, not in them: a copy of secrets/ alone reveals nothing), the CA
 * the egress proxy signs intercepted HTTPS with (every sandbox trusts it), and the workload
 * identity issuer (src/identity).
 */
export async function openCredentials(config: Config) {
  return {
    secrets: await SecretStore.open(join(config.home, 'secrets'), config.secretsKeyFile),
    egressCa: await loadEgressCa(join(config.home, 'egress-ca'), config.instance),
    identity: await loadIdentityIssuer(join(config.home, 'identity'), config.identityIssuer),
  };
}
