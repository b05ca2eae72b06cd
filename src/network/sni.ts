/**
 * The name a connection asks for, read from its first bytes, for the egress proxy: the SNI of
 * a TLS ClientHello, or the Host of an HTTP/1 request. Each returns `undefined` while more
 * bytes are needed, `null` when the bytes can never name a host (not TLS/HTTP, no SNI, no
 * Host, too long). Everything read comes from a sandbox: every length is checked against what
 * was received before it is used.
 */

/** A ClientHello fits in one TLS record (at most 16 KiB + header): more is refused. */
export const MAX_HELLO = 16_389;
/** An HTTP request head larger than this is refused (Node's own default limit). */
export const MAX_HEAD = 16_384;

export function tlsServerName(buf: Buffer): string | null | undefined {
  if (buf.length < 5) return undefined;
  if (buf[0] !== 0x16 || buf[1] !== 0x03) return null; // handshake record, TLS 1.x
  const recordEnd = 5 + buf.readUInt16BE(3);
  if (recordEnd > MAX_HELLO) return null;
  if (buf.length < recordEnd) return undefined;
  let p = 5;
  if (buf[p] !== 0x01) return null; // ClientHello
  const helloEnd = p + 4 + buf.readUIntBE(p + 1, 3);
  if (helloEnd > recordEnd) return null; // spread over several records: not handled
  p += 4 + 2 + 32; // header, client_version, random
  const skip = (lenBytes: number): boolean => {
    if (p + lenBytes > helloEnd) return false;
    const len = buf.readUIntBE(p, lenBytes);
    p += lenBytes + len;
    return p <= helloEnd;
  };
  if (!skip(1) || !skip(2) || !skip(1)) return null; // session id, cipher suites, compression
  if (p + 2 > helloEnd) return null;
  const extEnd = p + 2 + buf.readUInt16BE(p);
  if (extEnd > helloEnd) return null;
  p += 2;
  while (p + 4 <= extEnd) {
    const type = buf.readUInt16BE(p);
    const len = buf.readUInt16BE(p + 2);
    p += 4;
    if (p + len > extEnd) return null;
    if (type === 0x0000) {
      // server_name: list length, then entries of (type, length, name); host_name is type 0
      let q = p + 2;
      while (q + 3 <= p + len) {
        const nameType = buf[q];
        const nameLen = buf.readUInt16BE(q + 1);
        if (q + 3 + nameLen > p + len) return null;
        if (nameType === 0) return hostOrNull(buf.toString('latin1', q + 3, q + 3 + nameLen));
        q += 3 + nameLen;
      }
      return null;
    }
    p += len;
  }
  return null; // no SNI (an IP literal, say): no name to allow
}

export function httpHost(buf: Buffer): string | null | undefined {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return buf.length >= MAX_HEAD ? null : undefined;
  const head = buf.toString('latin1', 0, end);
  if (!/^[A-Z]{3,16} \S+ HTTP\/1\.[01]\r\n/.test(head)) return null;
  const hosts = head
    .split('\r\n')
    .slice(1)
    .filter((l) => /^host:/i.test(l));
  if (hosts.length !== 1) return null; // none, or two that could disagree
  const value = hosts[0]!.slice(5).trim();
  // drop a port; an IPv6 literal keeps no name to allow anyway
  return hostOrNull(value.startsWith('[') ? '' : value.replace(/:\d{1,5}$/, ''));
}

function hostOrNull(name: string): string | null {
  const n = name.toLowerCase().replace(/\.$/, '');
  return /^(?=.{1,253}$)[a-z0-9-]{1,63}(\.[a-z0-9-]{1,63})*$/.test(n) && !/^[\d.]+$/.test(n) ? n : null;
}
