import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, SignJWT, type JWK } from 'jose';
import { CoveError } from '../core/errors.ts';
import type { IamToken } from './iam.ts';

/**
 * Cove's workload identity issuer: it signs the JWT-SVIDs the egress proxy puts in place of
 * `${e2b.identity.tokens.<name>}` (one per request, so none is ever stored or seen by the
 * sandbox), and publishes the public key as a JWKS with an OIDC discovery document, so that a
 * relying party (a cloud's STS, your own service) can verify a token with any OIDC library.
 * One ES256 key per instance home (`<home>/identity/signing-key.json`, mode 0600), kept across
 * restarts: a token minted before one still verifies after it. To rotate it, stop Cove, move
 * the file to `previous-key.json` and start again: the JWKS lists both until you remove it
 * (tokens live TOKEN_TTL_S, so minutes suffice).
 */
export interface IdentityIssuer {
  /** The `iss` of its tokens: Cove's URL (COVE_IDENTITY_ISSUER), where the documents are served. */
  issuer(): string;
  /** Cove's own URL, the issuer when none is configured (known once it listens); returns itself. */
  servedAt(url: string): IdentityIssuer;
  /** A signed JWT-SVID for the sandbox's named token. */
  mint(sandbox: TokenSubject, token: IamToken): Promise<string>;
  /** `{keys: [...]}`: the public keys, newest first. */
  jwks(): { keys: JWK[] };
  /** The OIDC discovery document (`/.well-known/openid-configuration`). */
  discovery(): Record<string, unknown>;
}

export interface TokenSubject {
  sandboxId: string;
  templateId: string;
  /** The API key that created the sandbox (Cove's unit of tenancy, E2B's team). */
  keyId: string;
  tokenName: string;
}

/** Seconds a minted token is valid: it is made per request, so it need not live long. */
export const TOKEN_TTL_S = 300;
const ALG = 'ES256';

export async function loadIdentityIssuer(dir: string, configured?: string): Promise<IdentityIssuer> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const current = await loadKey(join(dir, 'signing-key.json'), true);
  const previous = await loadKey(join(dir, 'previous-key.json'), false);
  const keys = [current, previous].filter((k) => k !== undefined).map((k) => k.publicJwk);
  const signing = await importJWK(current!.privateJwk, ALG);
  let served: string | undefined;
  const issuer = () => {
    const url = configured ?? served;
    if (url === undefined) throw new CoveError('unavailable', 'the identity issuer is not serving yet');
    return url;
  };

  const self: IdentityIssuer = {
    issuer,
    servedAt(url) {
      served = url;
      return self;
    },
    async mint(s, token) {
      const now = Math.floor(Date.now() / 1000);
      const iss = issuer();
      return (
        new SignJWT({
          sandbox_id: s.sandboxId,
          template_id: s.templateId,
          key_id: s.keyId,
          token_name: s.tokenName,
        })
          .setProtectedHeader({ alg: ALG, kid: current!.publicJwk.kid!, typ: 'JWT' })
          .setIssuer(iss)
          // A SPIFFE ID, as a JWT-SVID's subject must be: the trust domain is the issuer's host.
          .setSubject(
            `spiffe://${new URL(iss).hostname}/template/${encodeURIComponent(s.templateId)}/sandbox/${s.sandboxId}`,
          )
          .setAudience(token.audience)
          .setIssuedAt(now)
          .setNotBefore(now - 5)
          .setExpirationTime(now + TOKEN_TTL_S)
          .setJti(randomUUID())
          .sign(signing)
      );
    },
    jwks: () => ({ keys }),
    discovery: () => ({
      issuer: issuer(),
      jwks_uri: `${issuer()}/.well-known/jwks.json`,
      id_token_signing_alg_values_supported: [ALG],
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      claims_supported: [
        'iss',
        'sub',
        'aud',
        'exp',
        'iat',
        'nbf',
        'jti',
        'sandbox_id',
        'template_id',
        'key_id',
      ],
    }),
  };
  return self;
}

interface StoredKey {
  privateJwk: JWK;
  publicJwk: JWK;
}

/** The key in `file`; made there (by rename, mode 0600) when `create` and absent. */
async function loadKey(file: string, create: boolean): Promise<StoredKey | undefined> {
  const text = await readFile(file, 'utf8').catch(() => undefined);
  let privateJwk: JWK;
  if (text !== undefined) privateJwk = JSON.parse(text) as JWK;
  else if (!create) return undefined;
  else {
    const pair = await generateKeyPair(ALG, { extractable: true });
    privateJwk = await exportJWK(pair.privateKey);
    const tmp = `${file}.tmp`;
    await writeFile(tmp, JSON.stringify(privateJwk), { mode: 0o600 });
    await rename(tmp, file);
  }
  const pub: JWK = { ...privateJwk };
  delete pub.d; // the private part
  const kid = await calculateJwkThumbprint(pub);
  return { privateJwk, publicJwk: { ...pub, kid, alg: ALG, use: 'sig' } };
}
