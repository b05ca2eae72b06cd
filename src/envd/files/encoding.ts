/** Content negotiation of /files, as envd's api/encoding.go: gzip or identity, nothing else. */
import { extname } from 'node:path';
import { HttpError } from './call.ts';

interface Weighted {
  encoding: string;
  q: number;
}

function parse(header: string): Weighted[] {
  return header.split(',').map((part) => {
    const [name = '', ...params] = part.split(';');
    let q = 1;
    for (const p of params) {
      const m = /^\s*q=([0-9.]+)\s*$/i.exec(p);
      if (m && !Number.isNaN(Number(m[1]))) q = Number(m[1]);
    }
    return { encoding: name.trim().toLowerCase(), q };
  });
}

/** Identity stays acceptable unless `identity;q=0`, or `*;q=0` without an explicit identity. */
function identityRejected(list: Weighted[]): boolean {
  const id = list.filter((e) => e.encoding === 'identity');
  if (id.some((e) => e.q === 0)) return true;
  return id.length === 0 && list.some((e) => e.encoding === '*' && e.q === 0);
}

/**
 * The response encoding for `Accept-Encoding`; 406 when none is acceptable (RFC 9110 12.5.3).
 * gzip is chosen when the client prefers it: named with q > 0 and nothing else (identity, or a
 * coding Cove lacks) named at the same or a higher q, or when identity is refused. That differs
 * from envd, which also gzips for `gzip, deflate`: fetch sends that on every request as a
 * statement of what it can decode, and compressing then costs a local client most of its
 * throughput for nothing. The SDK's `gzip: true` sends `gzip` alone and gets gzip.
 */
export function responseEncoding(
  header: string | undefined,
  rangeOrConditional: boolean,
): 'gzip' | 'identity' {
  if (!header) return 'identity';
  const list = parse(header);
  const rejected = identityRejected(list);
  // Range and conditional requests are answered in identity, so that 206 and 304 keep working.
  if (rangeOrConditional) {
    if (rejected)
      throw new HttpError(406, 'identity encoding not acceptable for Range or conditional request');
    return 'identity';
  }
  const gzipQ = Math.max(0, ...list.filter((e) => e.encoding === 'gzip').map((e) => e.q));
  const rivals = list.filter((e) => e.encoding !== 'gzip' && e.encoding !== '*' && e.q > 0);
  if (gzipQ > 0 && rivals.every((e) => e.q < gzipQ)) return 'gzip';
  if (!rejected) return 'identity';
  if (gzipQ > 0 || list.some((e) => e.encoding === '*' && e.q > 0)) return 'gzip';
  throw new HttpError(406, 'no acceptable encoding found, supported: [gzip]');
}

/** How a request body is encoded (`Content-Encoding`): identity or gzip, else 400. */
export function requestEncoding(header: string | undefined): 'gzip' | 'identity' {
  const e = parse(header ?? '')[0]?.encoding ?? '';
  if (e === '' || e === 'identity') return 'identity';
  if (e === 'gzip') return 'gzip';
  throw new HttpError(400, `unsupported Content-Encoding: ${header}, supported: [gzip]`);
}

/** Go's built-in mime.TypeByExtension table (the sandbox's /etc/mime.types is not consulted). */
const TYPES: Record<string, string> = {
  '.avif': 'image/avif',
  '.css': 'text/css; charset=utf-8',
  '.gif': 'image/gif',
  '.htm': 'text/html; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.jpeg': 'image/jpeg',
  '.jpg': 'image/jpeg',
  '.js': 'text/javascript; charset=utf-8',
  '.json': 'application/json',
  '.mjs': 'text/javascript; charset=utf-8',
  '.pdf': 'application/pdf',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.webp': 'image/webp',
  '.xml': 'text/xml; charset=utf-8',
};

export function contentTypeOf(path: string): string {
  return TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Go's mime.FormatMediaType("inline", {filename}): a token as is, printable ASCII quoted,
 * anything else as an RFC 2231 extended value. */
export function contentDisposition(filename: string): string {
  if (TOKEN.test(filename)) return `inline; filename=${filename}`;
  if (/^[\x20-\x7e]*$/.test(filename)) return `inline; filename="${filename.replace(/(["\\])/g, '\\$1')}"`;
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `inline; filename*=utf-8''${encoded}`;
}
