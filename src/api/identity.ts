import { Hono } from 'hono';
import type { IdentityIssuer } from '../identity/issuer.ts';
import type { ApiEnv } from './auth.ts';

/**
 * The workload identity issuer's public face (src/identity): the OIDC discovery document and
 * the JWKS its `jwks_uri` names. No key is asked for: a relying party verifying a sandbox's
 * token has none, and both documents hold only public keys.
 */
export function identityRoutes(issuer: IdentityIssuer): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  const cached = (body: unknown) =>
    new Response(JSON.stringify(body), {
      headers: { 'content-type': 'application/json', 'cache-control': 'public, max-age=300' },
    });
  app.get('/.well-known/openid-configuration', () => cached(issuer.discovery()));
  app.get('/.well-known/jwks.json', () => cached(issuer.jwks()));
  return app;
}
