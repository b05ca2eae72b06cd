import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { parseIam } from './iam.ts';
import { loadIdentityIssuer, TOKEN_TTL_S } from './issuer.ts';

const dir = mkdtempSync(join(tmpdir(), 'cove-identity-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('iam', () => {
  it('keeps valid tokens and treats an empty map as none', () => {
    const aws = { audience: 'sts.amazonaws.com', tokenType: 'JWT-SVID' };
    expect(parseIam({ tokens: { aws: { ...aws, filePath: '/x' } } })).toEqual({ aws });
    expect(parseIam({ tokens: {} })).toBeUndefined();
    expect(parseIam(null)).toBeUndefined();
  });

  it('refuses what the SDK and upstream refuse, naming the field', () => {
    const ok = { audience: 'a', tokenType: 'JWT-SVID' };
    for (const [iam, message] of [
      [{ tokens: { aws: { audience: '', tokenType: 'JWT-SVID' } } }, /aws\.audience: audience is required/],
      [{ tokens: { aws: { audience: 'a\nb', tokenType: 'JWT-SVID' } } }, /control characters/],
      [{ tokens: { aws: { audience: 'a', tokenType: 'OIDC' } } }, /only "JWT-SVID"/],
      [{ tokens: { 'a}b': ok } }, /without '\{', '\}'/],
      [{ tokens: Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`t${i}`, ok])) }, /max 5/],
      [{ tokens: [] }, /must be an object/],
    ] as const)
      expect(() => parseIam(iam), JSON.stringify(iam)).toThrow(message);
  });
});

describe('identity issuer', () => {
  const subject = { sandboxId: 'isbx1', templateId: 'base', keyId: 'key1', tokenName: 'aws' };
  const token = { audience: 'sts.amazonaws.com', tokenType: 'JWT-SVID' } as const;

  it('mints short-lived tokens that verify against its JWKS, and keeps its key', async () => {
    const issuer = (await loadIdentityIssuer(dir)).servedAt('http://127.0.0.1:3000');
    expect(statSync(join(dir, 'signing-key.json')).mode & 0o777).toBe(0o600);
    const jwt = await issuer.mint(subject, token);
    const jwks = createLocalJWKSet(issuer.jwks());
    const { payload } = await jwtVerify(jwt, jwks, {
      issuer: 'http://127.0.0.1:3000',
      audience: 'sts.amazonaws.com',
    });
    expect(payload).toMatchObject({
      sub: 'spiffe://127.0.0.1/template/base/sandbox/isbx1',
      sandbox_id: 'isbx1',
      template_id: 'base',
      key_id: 'key1',
    });
    expect(payload.exp! - payload.iat!).toBe(TOKEN_TTL_S);
    expect(JSON.stringify(issuer.jwks())).not.toContain('"d"');
    // expired a moment after its lifetime; another audience is refused
    const later = new Date((payload.exp! + 1) * 1000);
    await expect(jwtVerify(jwt, jwks, { currentDate: later })).rejects.toThrow(/exp/);
    await expect(jwtVerify(jwt, jwks, { audience: 'other' })).rejects.toThrow(/aud/);
    // a restart keeps the key: the token still verifies
    const again = (await loadIdentityIssuer(dir)).servedAt('http://127.0.0.1:3000');
    await expect(jwtVerify(jwt, createLocalJWKSet(again.jwks()))).resolves.toBeDefined();
    expect(issuer.discovery()).toMatchObject({
      issuer: 'http://127.0.0.1:3000',
      jwks_uri: 'http://127.0.0.1:3000/.well-known/jwks.json',
    });
  });

  it('prefers the configured issuer over its own URL', async () => {
    const issuer = (await loadIdentityIssuer(dir, 'https://cove.example.com')).servedAt('http://x:1');
    expect(decodeJwt(await issuer.mint(subject, token)).iss).toBe('https://cove.example.com');
  });
});
