import { timingSafeEqual } from 'node:crypto';
import { expirationOf, signature } from '../envd/files/signing.ts';

/**
 * Which sandbox a signed `/files` URL belongs to: the one whose access token reproduces its
 * signature (computed by envd's own signing code). The URL names no sandbox when the SDK's
 * sandbox URL is one fixed origin (spec 1.5 step 3). Only the routing happens here: envd
 * checks the signature (and its expiry) again before serving the file.
 */
export function signedSandbox(
  method: string | undefined,
  url: string | undefined,
  sandboxes: Iterable<{ id: string; envdAccessToken?: string }>,
): string | undefined {
  const operation = method === 'GET' ? 'read' : method === 'POST' ? 'write' : undefined;
  if (!operation) return undefined;
  const q = new URL(url ?? '/', 'http://gateway').searchParams;
  let expiration: number | undefined;
  try {
    expiration = expirationOf(q);
  } catch {
    return undefined; // a malformed expiry signs nothing
  }
  const given = Buffer.from(q.get('signature') ?? '');
  for (const s of sandboxes) {
    if (!s.envdAccessToken) continue;
    const expected = Buffer.from(
      signature(q.get('path') ?? '', operation, q.get('username') ?? '', s.envdAccessToken, expiration),
    );
    if (expected.length === given.length && timingSafeEqual(expected, given)) return s.id;
  }
  return undefined;
}
