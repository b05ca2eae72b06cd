import type { IncomingMessage } from 'node:http';
import { TOKEN_HEADER, verify } from './auth.ts';

/**
 * How a `cove node` admits a request (src/main.ts asks when started with it): only from an API
 * replica, proven by a token signed with this node's secret. The replica has checked the
 * caller's API key; the token names that key's id, which the node's API then takes as the
 * caller (`verifyKey`), since the node's own store holds no cluster keys.
 */
export interface ClusterAdmission {
  /** The request's verified claims, or undefined: then it must be refused. */
  admit(req: IncomingMessage): { keyId?: string } | undefined;
}

export function nodeAdmission(secret: string): ClusterAdmission {
  return {
    admit(req) {
      // A probe's (Kubernetes, a load balancer): it says only that the node serves.
      if (req.method === 'GET' && req.url === '/health') return {};
      const claims = verify(secret, 'api-to-node', req.headers[TOKEN_HEADER]);
      if (!claims) return undefined;
      return claims.keyId ? { keyId: claims.keyId } : {};
    },
  };
}
