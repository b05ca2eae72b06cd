import type { MiddlewareHandler } from 'hono';
import { CoveError } from '../core/errors.ts';
import { currentRequest } from '../core/request-context.ts';

/** What every authenticated route may read: the id of the key that called it (for logs). */
export interface ApiEnv {
  Variables: { keyId: string };
}

/** Checks a presented key; the keyring in `src/keys` in production. */
export type VerifyKey = (key: string) => { id: string } | undefined;

/**
 * Every API route needs a key (spec 2.1): `X-API-Key` as the SDK sends it (hono reads
 * header names case-insensitively), or `Authorization: Bearer <key>`, which the spec also
 * allows. Both missing and wrong keys are 401, which the SDK turns into AuthenticationError.
 */
export function requireApiKey(verify: VerifyKey): MiddlewareHandler<ApiEnv> {
  return async (c, next) => {
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(c.req.header('authorization') ?? '')?.[1];
    const key = c.req.header('x-api-key') ?? bearer;
    if (!key) throw new CoveError('unauthenticated', 'missing API key: send it in the X-API-Key header');
    const record = verify(key);
    if (!record) throw new CoveError('unauthenticated', 'invalid API key');
    c.set('keyId', record.id);
    // Whatever this request does below (manager, agent) is recorded under this key.
    const request = currentRequest();
    if (request) request.keyId = record.id;
    await next();
  };
}
