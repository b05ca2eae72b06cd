import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * E2B's file-URL signature (spec 3.6): `v1_` + unpadded base64 of
 * sha256(`path:operation:user:token[:expiration]`), operation `read` for GET, `write` for POST.
 */
export function fileSignature(opts: {
  path: string;
  operation: 'read' | 'write';
  user: string;
  token: string;
  expiration?: string | undefined;
}): string {
  const raw = [
    opts.path,
    opts.operation,
    opts.user,
    opts.token,
    ...(opts.expiration ? [opts.expiration] : []),
  ];
  return `v1_${createHash('sha256').update(raw.join(':')).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Which sandbox a signed `/files` URL belongs to: the one whose access token reproduces its
 * signature. The URL names no sandbox when the SDK's sandbox URL is one fixed origin
 * (spec 1.5 step 3). Only the routing happens here: envd checks the signature (and its
 * expiry) again before serving the file.
 */
export function signedSandbox(
  method: string | undefined,
  url: string | undefined,
  sandboxes: Iterable<{ id: string; envdAccessToken?: string }>,
): string | undefined {
  const operation = method === 'GET' ? 'read' : method === 'POST' ? 'write' : undefined;
  if (!operation) return undefined;
  const q = new URL(url ?? '/', 'http://gateway').searchParams;
  const given = Buffer.from(q.get('signature') ?? '');
  for (const s of sandboxes) {
    if (!s.envdAccessToken) continue;
    const expected = Buffer.from(
      fileSignature({
        path: q.get('path') ?? '',
        operation,
        user: q.get('username') ?? '',
        token: s.envdAccessToken,
        expiration: q.get('signature_expiration') ?? undefined,
      }),
    );
    if (expected.length === given.length && timingSafeEqual(expected, given)) return s.id;
  }
  return undefined;
}
