import type { NetworkCodec } from '../store/sqlite-sealing.ts';
import { openString, sealString } from './seal.ts';

/** How the state database holds an upstream proxy: the password sealed, under its own field. */
interface StoredProxy {
  address: string;
  username?: string;
  password?: string;
  sealedPassword?: string;
}

/**
 * The state database's view of a sandbox's network (src/store/sqlite.ts `network` column):
 * the upstream egress proxy's password (E2B `network.egressProxy.password`) is sealed with
 * the secrets key (seal.ts) as `sealedPassword`, so the database file, its WAL and its
 * backups never hold it; in memory, and for the egress proxy, the record has it in clear.
 * `seal` returns its argument itself when nothing is in clear (the store re-seals old rows
 * by that). A password that cannot be opened (the key file was replaced) is dropped with a
 * warning: the upstream then refuses the sandbox's connections, which fail closed.
 */
export function networkSealer(key: Buffer, warn: (message: string) => void = () => {}): NetworkCodec {
  return {
    seal(network) {
      const proxy = network.egressProxy;
      if (proxy?.password === undefined) return network;
      const { password, ...rest } = proxy;
      const egressProxy: StoredProxy = { ...rest, sealedPassword: sealString(key, password) };
      return { ...network, egressProxy };
    },
    open(stored) {
      const proxy: StoredProxy | undefined = stored.egressProxy;
      if (proxy?.sealedPassword === undefined) return stored;
      const { sealedPassword, ...rest } = proxy;
      let password: string | undefined;
      try {
        password = openString(key, sealedPassword);
      } catch {
        warn(
          `the egress proxy password of a sandbox (${proxy.address}) cannot be opened with this secrets key`,
        );
      }
      return { ...stored, egressProxy: { ...rest, ...(password !== undefined && { password }) } };
    },
  };
}
