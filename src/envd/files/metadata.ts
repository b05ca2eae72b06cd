import type { IncomingHttpHeaders } from 'node:http';
import { HttpError } from './call.ts';

const PREFIX = 'x-metadata-';
/** envd's bounds (shared/pkg/filesystem/xattr.go); the agent enforces the same. */
const MAX_KEY = 246;
const MAX_TOTAL = 4096;
const XATTR_PREFIX_LEN = 'user.e2b.'.length;
const PRINTABLE = /^[\x20-\x7e]*$/;

/**
 * The metadata an upload sets: `X-Metadata-<Key>: <value>` headers, keys lowercased (Node
 * lowercases header names, as envd does the keys). Validated before anything is written, so
 * a rejected upload creates no file: 400 `invalid metadata: ...`.
 */
export function metadataOf(headers: IncomingHttpHeaders): Record<string, string> {
  const out: [string, string][] = [];
  let total = 0;
  for (const [name, value] of Object.entries(headers)) {
    if (!name.startsWith(PREFIX) || value === undefined) continue;
    const key = name.slice(PREFIX.length);
    const v = Array.isArray(value) ? (value[0] ?? '') : value;
    if (key === '') continue;
    if (key.length > MAX_KEY)
      throw new HttpError(400, `invalid metadata: metadata key "${key}" exceeds ${MAX_KEY} bytes`);
    if (!PRINTABLE.test(key) || !PRINTABLE.test(v))
      throw new HttpError(400, `invalid metadata: metadata key "${key}" or its value is not printable ASCII`);
    total += XATTR_PREFIX_LEN + key.length + Buffer.byteLength(v);
    out.push([key, v]);
  }
  if (total > MAX_TOTAL)
    throw new HttpError(400, `invalid metadata: total metadata size ${total} exceeds ${MAX_TOTAL} bytes`);
  return Object.fromEntries(out);
}
