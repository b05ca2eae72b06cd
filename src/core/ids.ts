import { randomBytes, randomInt } from 'node:crypto';

const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A sandbox id: 20 lowercase alphanumerics, the shape E2B uses. It doubles as the hostname
 * and as the owner tag of every host object (`cove-<id>`), so it must stay DNS-label safe.
 */
export function newSandboxId(): string {
  let id = alphabet[randomInt(26)]!; // a letter first: safe as a hostname and a netns name
  for (let i = 1; i < 20; i++) id += alphabet[randomInt(alphabet.length)];
  return id;
}

export const sandboxIdPattern = /^[a-z][a-z0-9]{19}$/;

export function isSandboxId(value: string): boolean {
  return sandboxIdPattern.test(value);
}

/** A secret for the host↔agent channel: 32 random bytes, hex. */
export function newToken(): string {
  return randomBytes(32).toString('hex');
}
