import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';

/** The four addresses of a connection the egress proxy accepted (its socket's, as seen there). */
export interface Accepted {
  /** The sandbox's address and port (the socket's remote end). */
  source: string;
  sourcePort: number;
  /** The proxy's listening address and port the kernel redirected it to (the local end). */
  proxy: string;
  proxyPort: number;
}

/**
 * The address and port a sandbox's redirected connection was first sent to, from the
 * kernel's connection tracking table (`/proc/net/nf_conntrack`). The egress proxy needs it
 * for connections it does not intercept in a sandbox whose ports 80/443 it sees only for
 * header rules: those go on to where the sandbox sent them, untouched.
 *
 * An entry is found by its REPLY tuple, `src=<proxy> dst=<sandbox> sport=<proxy port>
 * dport=<the port the proxy sees>`: that is the accepted socket itself, unique among the
 * entries the kernel holds. Not by the original tuple: entries outlive their connections
 * (CLOSE 10 s, TIME_WAIT 2 min), and when a sandbox (or the next one at its address) opens a
 * connection from a source port whose redirect would give the reply tuple of such an entry,
 * NAT picks another source port for it, so the proxy sees a port the original tuple does not
 * hold. Looked up by `src=<sandbox> sport=<port seen>`, that connection was not found and was
 * reset (curl exit 56, now and then under load), or a stale entry that happened to hold the
 * port answered with an old destination.
 *
 * The file is a dump of a live hash table, read in several chunks: an entry can be skipped
 * when another one of its bucket is removed between two chunks. The entry of a connection the
 * proxy holds open exists, so a miss is read again a few times before it counts.
 * Undefined when the table is not readable (a kernel without CONFIG_NF_CONNTRACK_PROCFS) or
 * holds no such entry.
 */
export async function originalTarget(
  conn: Accepted,
  read: () => Promise<string> = readTable,
): Promise<{ address: string; port: number } | undefined> {
  for (let attempt = 0; ; attempt++) {
    const found = findOriginal(await read(), conn);
    if (found || attempt === RETRIES.length) return found;
    await sleep(RETRIES[attempt]);
  }
}

/** Milliseconds before each new read after a miss. */
const RETRIES = [0, 5, 25];

const readTable = () => readFile('/proc/net/nf_conntrack', 'latin1').catch(() => '');

const plain = (address: string) => address.replace(/^::ffff:/, '');

/** The original destination of the one TCP entry whose reply tuple is `conn`'s socket. */
export function findOriginal(table: string, conn: Accepted): { address: string; port: number } | undefined {
  const reply = `src=${plain(conn.proxy)} dst=${plain(conn.source)} sport=${conn.proxyPort} dport=${conn.sourcePort} `;
  for (let at = table.indexOf(reply); at >= 0; at = table.indexOf(reply, at + 1)) {
    const lineStart = table.lastIndexOf('\n', at) + 1;
    const lineEnd = table.indexOf('\n', at);
    const line = table.slice(lineStart, lineEnd < 0 ? undefined : lineEnd);
    // The original tuple comes first; the reply tuple must be the second one, not a first.
    const m = /^\S+\s+\d+\s+tcp\s.*?src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+) (?:\[\w+\] )?src=/.exec(line);
    // Not the original source port: NAT may have changed it (above).
    if (m && lineStart + m[0].length - 4 === at && m[1] === plain(conn.source))
      return { address: m[2]!, port: Number(m[4]) };
  }
  return undefined;
}
