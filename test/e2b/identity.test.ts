import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes } from '../helpers.ts';
import { startEgressWorld, type EgressWorld } from '../netns-internet.ts';

type E2b = EgressWorld['e2b'];
type Sandbox = InstanceType<E2b['Sandbox']>;

/**
 * Workload identity (`iam`, issue 13) through the real SDK: a sandbox registers a token, a
 * header rule names it with the SDK's transform callback, and the egress proxy puts a JWT-SVID
 * minted for that request into the request to the stand-in internet (netns-internet.ts).
 * The test plays the relying party: OIDC discovery on Cove's port, then its JWKS.
 */
describe.skipIf(!canRunSandboxes)('workload identity tokens', () => {
  let world: EgressWorld;
  let cove: EgressWorld['cove'];
  let e2b: E2b;
  const aws = { audience: 'sts.amazonaws.com', tokenType: 'JWT-SVID' } as const;

  /** The Authorization header allowed.test received, as curl in the sandbox sees the echo. */
  async function authorization(sbx: Sandbox, path = '/headers'): Promise<string | undefined> {
    const r = await sbx.commands.run(`curl -sS --max-time 30 https://allowed.test${path}`);
    return (JSON.parse(r.stdout) as { headers: Record<string, string> }).headers.authorization;
  }

  beforeAll(async () => {
    world = await startEgressWorld();
    ({ cove, e2b } = world);
  });
  afterAll(() => world?.close());

  it('mints a token per request that a relying party verifies through OIDC discovery', async () => {
    const sbx = await e2b.Sandbox.create('base', {
      iam: { tokens: { aws: e2b.Secret.iamToken(aws) } },
      network: {
        rules: {
          'allowed.test': [
            { transform: ({ iam }) => ({ headers: { Authorization: `Bearer ${iam.tokens.aws}` } }) },
          ],
        },
      },
    });
    const header = await authorization(sbx);
    expect(header).toMatch(/^Bearer [\w-]+\.[\w-]+\.[\w-]+$/);
    const jwt = header!.slice('Bearer '.length);

    const discovery = (await (await fetch(`${cove.url}/.well-known/openid-configuration`)).json()) as {
      issuer: string;
      jwks_uri: string;
    };
    expect(discovery.issuer).toBe(cove.url);
    const jwks = createRemoteJWKSet(new URL(discovery.jwks_uri));
    const { payload, protectedHeader } = await jwtVerify(jwt, jwks, {
      issuer: discovery.issuer,
      audience: aws.audience,
      algorithms: ['ES256'],
    });
    expect(protectedHeader.alg).toBe('ES256');
    expect(payload).toMatchObject({ sandbox_id: sbx.sandboxId, template_id: 'base', token_name: 'aws' });
    expect(payload.sub).toBe(`spiffe://127.0.0.1/template/base/sandbox/${sbx.sandboxId}`);
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(300);
    // It expires: the same token, checked as of a second after its expiry, is refused.
    await expect(jwtVerify(jwt, jwks, { currentDate: new Date((payload.exp! + 1) * 1000) })).rejects.toThrow(
      /"exp" claim/,
    );
    // A wrong signature is refused too (the relying party's other half of the check).
    const [h, p] = jwt.split('.');
    const forged = `${h}.${p}.${Buffer.alloc(64).toString('base64url')}`;
    await expect(jwtVerify(forged, jwks)).rejects.toThrow(/signature/);

    // Minted per request: the next request carries another token; the sandbox holds none.
    const next = (await authorization(sbx))!.slice('Bearer '.length);
    expect(decodeJwt(next).jti).not.toBe(payload.jti);
    expect((await sbx.commands.run('env')).stdout).not.toContain(jwt.slice(0, 40));

    // Audited by name.
    const audit = await fetch(`${cove.url}/cove/v1/audit?sandbox=${sbx.sandboxId}&action=network.inject`, {
      headers: { 'X-API-Key': cove.apiKey },
    });
    const text = await audit.text();
    expect(text).not.toContain(jwt);
    expect(text).toContain('"tokens":["aws"]');
  });

  it('updateNetwork can name a registered token at run time, not an unknown one', async () => {
    // (a rule from the start: it sends the sandbox's DNS and web traffic through the proxy)
    const sbx = await e2b.Sandbox.create('base', {
      iam: { tokens: { svc: { audience: 'https://svc.test', tokenType: 'JWT-SVID' } } },
      network: { rules: { 'allowed.test': [{ transform: { headers: { 'X-Before': '1' } } }] } },
    });
    expect(await authorization(sbx)).toBeUndefined();
    await sbx.updateNetwork({
      rules: {
        'allowed.test': [{ transform: ({ iam }) => ({ headers: { Authorization: iam.tokens.svc! } }) }],
      },
    });
    expect(decodeJwt((await authorization(sbx))!).aud).toBe('https://svc.test');
    const err = await sbx
      .updateNetwork({
        rules: { 'allowed.test': [{ transform: ({ iam }) => ({ headers: { A: iam.tokens.nope! } }) }] },
      })
      .catch((e: unknown) => e);
    expect(String(err)).toMatch(/400.*no identity token named "nope"/);
  });

  it('refuses bad iam with 400 and creates nothing', async () => {
    const before = cove.manager.list().length;
    const rule = (value: string) => ({
      'allowed.test': [{ transform: { headers: { Authorization: value } } }],
    });
    const attempts: Array<[Record<string, unknown>, RegExp]> = [
      [{ iam: { tokens: { aws: { audience: '', tokenType: 'JWT-SVID' } } } }, /audience is required/],
      [{ iam: { tokens: { aws: { audience: 'x', tokenType: 'OIDC' } } } }, /only "JWT-SVID"/],
      [{ network: { rules: rule('${e2b.identity.tokens.aws}') } }, /no identity token named "aws"/],
      [
        { iam: { tokens: { aws } }, network: { rules: rule('${e2b.identity.tokens.aws') } },
        /malformed placeholder/,
      ],
    ];
    for (const [opts, message] of attempts) {
      const err = await e2b.Sandbox.create('base', opts as never).catch((e: unknown) => e);
      expect(String(err), JSON.stringify(opts)).toMatch(/400/);
      expect(String(err), JSON.stringify(opts)).toMatch(message);
    }
    expect(cove.manager.list().length).toBe(before);
  });
});
