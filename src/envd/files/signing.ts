import { createHash, timingSafeEqual } from 'node:crypto';
import { CoveError } from '../../core/errors.ts';

export type FileOperation = 'read' | 'write';

/**
 * The signature of a /files URL, shared by the SDK (src/sandbox/signature.ts) and envd
 * (api/auth.go): `v1_` + unpadded std-base64 of sha256(`path:op:user:token[:expiration]`).
 * `path` and `user` are the query values as given (not resolved), `user` "" when absent.
 */
export function signature(
  path: string,
  op: FileOperation,
  user: string,
  token: string,
  expiration?: number,
): string {
  const raw = [path, op, user, token, ...(expiration === undefined ? [] : [String(expiration)])].join(':');
  return 'v1_' + createHash('sha256').update(raw).digest('base64').replace(/=+$/, '');
}

function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** `signature_expiration`: unix seconds, Go's strconv.Atoi syntax; absent is no expiry. */
export function expirationOf(query: URLSearchParams): number | undefined {
  const v = query.get('signature_expiration');
  if (v === null) return undefined;
  if (!/^[+-]?\d{1,18}$/.test(v))
    throw new CoveError('invalid_argument', `Invalid format for parameter signature_expiration: ${v}`);
  return Number(v);
}

/**
 * envd's `validateSigning` for GET and POST /files: nothing to check without an access
 * token; a token header must match; otherwise the signature must, and must not have expired.
 * Returns the 401 message (envd's exact words, which the SDK's tests assert), or undefined.
 */
export function signingError(opts: {
  token: string | undefined;
  headerToken: string | undefined;
  query: URLSearchParams;
  op: FileOperation;
  nowMs?: number;
}): string | undefined {
  const { token, headerToken, query, op } = opts;
  if (!token) return undefined;
  if (headerToken)
    return same(headerToken, token) ? undefined : 'access token present in header but does not match';
  const given = query.get('signature');
  if (given === null) return 'missing signature query parameter';
  const expiration = expirationOf(query);
  const expected = signature(query.get('path') ?? '', op, query.get('username') ?? '', token, expiration);
  if (!same(given, expected)) return 'invalid signature';
  if (expiration !== undefined && expiration < Math.floor((opts.nowMs ?? Date.now()) / 1000))
    return 'signature is already expired';
  return undefined;
}
