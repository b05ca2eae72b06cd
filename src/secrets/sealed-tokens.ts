import { newToken } from '../core/ids.ts';
import type { StoreCodecs, TokenCodec } from '../store/sqlite-sealing.ts';
import { networkSealer } from './sealed-network.ts';
import { openString, sealString } from './seal.ts';

/** sealString's output begins so; Cove's tokens are hex (src/core/ids.ts), so never do. */
const SEALED = 'v1.';

/**
 * The state database's view of a sandbox's tokens (agent, envd access, traffic access):
 * sealed with the secrets key (seal.ts), as Cove needs each back in clear (it talks to the
 * agent with one, and connect returns the others to the SDK, spec/e2b-protocol.md), so a hash
 * would not do. A token that cannot be opened (the key file was replaced) becomes a fresh
 * random one with a warning: nobody holds it, so that sandbox's access fails closed.
 */
export function tokenSealer(key: Buffer, warn: (message: string) => void = () => {}): TokenCodec {
  return {
    seal: (token) => (token.startsWith(SEALED) ? token : sealString(key, token)),
    open(stored) {
      if (!stored.startsWith(SEALED)) return stored;
      try {
        return openString(key, stored);
      } catch {
        warn('a sandbox token cannot be opened with this secrets key: that sandbox is unreachable');
        return newToken();
      }
    },
  };
}

/** All the state database seals with the secrets key (main.ts). */
export function storeSealing(key: Buffer, warn: (message: string) => void): StoreCodecs {
  return { network: networkSealer(key, warn), tokens: tokenSealer(key, warn) };
}
