import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Sandbox-scoped service tokens: `cst_<sandbox id>_<key id>_<mac>`, an HMAC over the sandbox
 * and the API key that created it, under a secret kept in Cove's state directory (0600). Nothing
 * is stored per token: the sandbox's record is the token's life, so it dies with the sandbox
 * (the verifier asks the manager) and with its key (a revoked key's sandboxes lose it too), and
 * it survives a Cove restart because the secret does.
 */
export interface SandboxToken {
  sandboxId: string;
  /** The API key id that created the sandbox: quotas, usage and memory count against it. */
  keyId: string;
}

export function loadSecret(path: string): Buffer {
  try {
    const hex = readFileSync(path, 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(hex)) return Buffer.from(hex, 'hex');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = randomBytes(32);
  // 'wx': two starts racing cannot both write; the loser reads the winner's.
  try {
    writeFileSync(path, secret.toString('hex'), { mode: 0o600, flag: 'wx' });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadSecret(path);
    throw err;
  }
  return secret;
}

export function createTokens(secret: Buffer) {
  const mac = (sandboxId: string, keyId: string) =>
    createHmac('sha256', secret).update(`sandbox-token\0${sandboxId}\0${keyId}`).digest('base64url');
  return {
    mint(t: SandboxToken): string {
      return `cst_${t.sandboxId}_${t.keyId}_${mac(t.sandboxId, t.keyId)}`;
    },
    /** The token's sandbox and key when its signature holds; whether they still live is the caller's. */
    parse(token: string): SandboxToken | undefined {
      const m = /^cst_([a-z0-9]{1,64})_(key_[0-9a-f]{1,64})_([\w-]{43})$/.exec(token);
      if (!m) return undefined;
      const [, sandboxId, keyId, given] = m as unknown as [string, string, string, string];
      const want = Buffer.from(mac(sandboxId, keyId));
      const got = Buffer.from(given);
      return got.length === want.length && timingSafeEqual(got, want) ? { sandboxId, keyId } : undefined;
    },
  };
}

export type Tokens = ReturnType<typeof createTokens>;
