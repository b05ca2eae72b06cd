/**
 * What stops a gVisor checkpoint, found before trying one: Debian's runsc fails the checkpoint
 * and the sandbox dies on a TCP endpoint it cannot save (measured here):
 * - a connection over eth0 that is open ("encoding error at object tcp.endpoint"); over the
 *   loopback, connections save and restore fine;
 * - any TCP socket, listening ones included, watched by an epoll instance ("endpoint still has
 *   waiters upon save": epoll's registration outlives the paused task), which is how Node,
 *   uvicorn, tornado and nginx servers wait. poll/select-based servers save fine.
 * A connection in TIME_WAIT (60 s in gVisor) is said to fail too, and is not listed in
 * /proc/net/tcp: nothing here can see it (docs/runtimes.md).
 */

/**
 * Run in the sandbox: every process's fds, the TCP tables, every process's name. Three
 * programs in all: each fork and exec costs ~10-20 ms under gVisor's ptrace platform. The
 * agent writes the same as it quiesces (agent/src/probe.c); this is for agents that do not.
 */
export const PROBE_SCRIPT = [
  'ls -l /proc/[0-9]*/fd/ 2>/dev/null',
  'echo ---',
  'cat /proc/net/tcp /proc/net/tcp6 2>/dev/null',
  'echo ---',
  'head -n1 /proc/[0-9]*/comm 2>/dev/null',
  'exit 0',
].join('\n');

const LISTEN = '0A';
const CLOSE = '07';

/** PROBE_SCRIPT's output → one line per reason the checkpoint would fail (none: go ahead). */
export function checkpointBlockers(probe: string): string[] {
  const [fds = '', tables = '', comms = ''] = probe.split(/^---$/m);
  const found: string[] = [];
  const tcpInodes = new Set<string>();
  for (const line of tables.split('\n')) {
    const fields = line.trim().split(/\s+/);
    const [, local, remote, state] = fields;
    const inode = fields[9];
    if (!local || !remote || !state || !/^[0-9A-F]{2}$/.test(state)) continue;
    if (inode) tcpInodes.add(inode);
    if (state === LISTEN || state === CLOSE) continue;
    if (isLoopback(local) && isLoopback(remote)) continue;
    found.push(`a TCP connection ${local} → ${remote} (state ${state})`);
  }
  const names = new Map<string, string>();
  let pid = '';
  for (const line of comms.split('\n')) {
    const header = /^==> \/proc\/(\d+)\/comm <==$/.exec(line);
    if (header) pid = header[1]!;
    else if (pid && line.trim()) names.set(pid, line.trim());
  }
  const epollOnTcp = new Set<string>();
  const byPid = new Map<string, { epoll: boolean; sockets: string[] }>();
  for (const line of fds.split('\n')) {
    const header = /^\/proc\/(\d+)\/fd\/?:$/.exec(line);
    if (header) pid = header[1]!;
    const target = line.split(' -> ')[1];
    if (header || !target) continue;
    const entry = byPid.get(pid) ?? { epoll: false, sockets: [] };
    if (target.includes('[eventpoll]')) entry.epoll = true;
    const inode = /^socket:\[(\d+)\]$/.exec(target.trim())?.[1];
    if (inode) entry.sockets.push(inode);
    byPid.set(pid, entry);
  }
  for (const [p, { epoll, sockets }] of byPid)
    if (epoll && sockets.some((s) => tcpInodes.has(s))) epollOnTcp.add(p);
  for (const p of epollOnTcp) found.push(`epoll on a TCP socket in pid ${p} (${names.get(p) ?? '?'})`);
  return found;
}

/** 127.0.0.0/8 (stored little-endian: the last byte pair is the first octet) or ::1 / ::ffff:127.x. */
function isLoopback(hexAddress: string): boolean {
  const [addr] = hexAddress.split(':');
  if (addr === undefined) return false;
  if (addr.length === 8) return addr.endsWith('7F');
  if (addr === '00000000000000000000000001000000') return true;
  return addr.startsWith('0000000000000000FFFF0000') && addr.endsWith('7F');
}
