import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { CoveError } from '../core/errors.ts';

/**
 * The instance's secrets key: 32 bytes in their own file (`COVE_SECRETS_KEY_FILE`, mode 0600),
 * made at first start. It seals secrets' values (store.ts) and the upstream egress proxy's
 * password in the state database (sealed-network.ts), so that neither is readable from a copy
 * of the state directory without it.
 */
export async function loadSecretsKey(keyFile: string): Promise<Buffer> {
  let key = await readFile(keyFile).catch(() => undefined);
  if (key === undefined) {
    // 'wx': two processes starting at once both end up reading the one file that was made
    await writeFile(keyFile, randomBytes(32), { mode: 0o600, flag: 'wx' }).catch(() => undefined);
    key = await readFile(keyFile);
  }
  if (key.length !== 32) throw new CoveError('invalid_argument', `${keyFile}: not a 32-byte key`);
  return key;
}

/** AES-256-GCM with a random 96-bit IV: `v1.<iv>.<tag>.<ciphertext>`, base64url. */
export function sealString(key: Buffer, plaintext: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', iv, cipher.getAuthTag(), data]
    .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
    .join('.');
}

/** The plaintext of `sealString`; throws when the key is another or the text was altered. */
export function openString(key: Buffer, sealed: string): string {
  const [version, iv, tag, data] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || tag === undefined || data === undefined)
    throw new Error('not a sealed value');
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([decipher.update(Buffer.from(data, 'base64url')), decipher.final()]).toString('utf8');
}
