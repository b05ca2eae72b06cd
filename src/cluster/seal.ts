import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

/**
 * Sandbox envd access tokens kept in the cluster store, sealed with AES-256-GCM under a key
 * derived from the cluster secret (which only API replicas hold). Replicas need the token to
 * tell which sandbox a signed `/files` URL is for (its signature is made with it); a copy of
 * the database, or a node, learns nothing from the sealed text. node:crypto: no library needed.
 */
export function createSealer(clusterSecret: string, label = 'cove-envd-token-v1') {
  const key = createHmac('sha256', clusterSecret).update(label).digest();
  return {
    seal(plain: string): string {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()]);
      return `v1.${Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')}`;
    },
    /** The plain text, or undefined for anything not sealed by this cluster secret. */
    open(sealed: string): string | undefined {
      if (!sealed.startsWith('v1.')) return undefined;
      const raw = Buffer.from(sealed.slice(3), 'base64url');
      if (raw.length < 28) return undefined;
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12));
        decipher.setAuthTag(raw.subarray(12, 28));
        return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
      } catch {
        return undefined;
      }
    },
  };
}

export type Sealer = ReturnType<typeof createSealer>;

/** Labels of the other sealing keys: secrets at rest (from the cluster secret), and a secret's
 * value on its way from a replica to a node (from that node's secret, which both hold). */
export const SECRET_AT_REST = 'cove-secret-v1';
export const SECRET_TRANSIT = 'cove-secret-transit-v1';
