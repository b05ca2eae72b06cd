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

/** AES-256-GCM's three parts: a random 96-bit IV, the tag and the ciphertext (store.ts keeps them apart). */
export interface SealedParts {
  iv: Buffer;
  tag: Buffer;
  data: Buffer;
}

export function sealParts(key: Buffer, plaintext: string): SealedParts {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return { iv, tag: cipher.getAuthTag(), data };
}

/** The plaintext of `sealParts`; throws when the key is another or the text was altered. */
export function openParts(key: Buffer, { iv, tag, data }: SealedParts): string {
  const decipher = createDecipheriv('aes-256-gcm', key, iv);
  decipher.setAuthTag(tag);
  return Buffer.concat([decipher.update(data), decipher.final()]).toString('utf8');
}

/** `sealParts` as one string: `v1.<iv>.<tag>.<ciphertext>`, base64url. */
export function sealString(key: Buffer, plaintext: string): string {
  const { iv, tag, data } = sealParts(key, plaintext);
  return ['v1', iv, tag, data].map((p) => (typeof p === 'string' ? p : p.toString('base64url'))).join('.');
}

/** The plaintext of `sealString`; throws when the key is another or the text was altered. */
export function openString(key: Buffer, sealed: string): string {
  const [version, iv, tag, data] = sealed.split('.');
  if (version !== 'v1' || iv === undefined || tag === undefined || data === undefined)
    throw new Error('not a sealed value');
  const b = (part: string) => Buffer.from(part, 'base64url');
  return openParts(key, { iv: b(iv), tag: b(tag), data: b(data) });
}
