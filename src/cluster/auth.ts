import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Signed tokens between API replicas and nodes (HMAC-SHA256; no certificate authority to run).
 * The operator holds one cluster secret, given to API replicas only; each node gets its own
 * secret, derived from the cluster secret and its name (`cove cluster node-secret <name>`). So
 * a node can sign as itself and check what API replicas send it, but cannot sign as another
 * node nor reach another node as an API replica. Tokens live a minute; carry them over TLS
 * (or a private network) where a replay within that minute matters.
 */
export const TOKEN_HEADER = 'cove-cluster-token';
const TTL_MS = 60_000;

const hmac = (key: string, data: string) => createHmac('sha256', key).update(data).digest('base64url');

/** The secret of node `name`, from the cluster secret. */
export function nodeSecret(clusterSecret: string, name: string): string {
  return hmac(clusterSecret, `node:${name}`);
}

/** Node names are URL path parts: plain; dots allowed, as in Kubernetes node names (DNS subdomains). */
export const NODE_NAME = /^[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$/;

type Purpose = 'api-to-node' | 'node-to-api';

/** A token for `purpose` carrying `claims`, signed with the node's secret. */
export function sign(
  secret: string,
  purpose: Purpose,
  claims: Record<string, string>,
  now = Date.now(),
): string {
  const body = Buffer.from(JSON.stringify({ ...claims, exp: now + TTL_MS })).toString('base64url');
  return `v1.${body}.${hmac(secret, `${purpose}.${body}`)}`;
}

/** The claims of a valid, unexpired token for `purpose`; undefined for anything else. */
export function verify(
  secret: string,
  purpose: Purpose,
  token: string | string[] | undefined,
  now = Date.now(),
): Record<string, string> | undefined {
  if (typeof token !== 'string' || token.length > 4096) return undefined;
  const [version, body, mac] = token.split('.');
  if (version !== 'v1' || !body || !mac) return undefined;
  const want = Buffer.from(hmac(secret, `${purpose}.${body}`));
  const got = Buffer.from(mac);
  if (want.length !== got.length || !timingSafeEqual(want, got)) return undefined;
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof claims !== 'object' || claims === null) return undefined;
  const { exp, ...rest } = claims as Record<string, unknown>;
  if (typeof exp !== 'number' || exp < now) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(rest)) if (typeof v === 'string') out[k] = v;
  return out;
}
