import { readFile } from 'node:fs/promises';

/**
 * The address a sandbox's redirected connection was first sent to, from the kernel's
 * connection tracking table (`/proc/net/nf_conntrack`; the original tuple is the first
 * `src= dst= sport= dport=` of a line). The egress proxy needs it for connections it does not
 * intercept in a sandbox whose ports 80/443 it sees only for header rules: those go on to where
 * the sandbox sent them, untouched. Undefined when the table is not readable (a kernel without
 * CONFIG_NF_CONNTRACK_PROCFS) or has no such entry.
 */
export async function originalDestination(source: string, sourcePort: number): Promise<string | undefined> {
  return (await originalTarget(source, sourcePort))?.address;
}

/** The address and port it was sent to (the tunnel of an upstream proxy needs both). */
export async function originalTarget(
  source: string,
  sourcePort: number,
): Promise<{ address: string; port: number } | undefined> {
  const table = await readFile('/proc/net/nf_conntrack', 'latin1').catch(() => '');
  const needle = `src=${source} `;
  const port = ` sport=${sourcePort} `;
  for (let at = table.indexOf(needle); at >= 0; at = table.indexOf(needle, at + 1)) {
    const lineStart = table.lastIndexOf('\n', at) + 1;
    const line = table.slice(lineStart, table.indexOf('\n', at));
    const m = /src=(\S+) dst=(\S+) sport=(\d+) dport=(\d+)/.exec(line);
    if (m && m[1] === source && ` sport=${m[3]} ` === port && / tcp /.test(line))
      return { address: m[2]!, port: Number(m[4]) };
  }
  return undefined;
}
