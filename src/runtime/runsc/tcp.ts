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

/** Run in the sandbox: every process with its fd targets, then the TCP tables. */
export const PROBE_SCRIPT = [
  'for p in /proc/[0-9]*; do',
  '  echo "P ${p#/proc/} $(tr "\\0" " " < $p/cmdline 2>/dev/null | cut -c1-60)"',
  '  for f in $p/fd/*; do echo "F $(readlink $f)"; done 2>/dev/null',
  'done',
  'echo ---',
  'cat /proc/net/tcp /proc/net/tcp6 2>/dev/null',
  'exit 0',
].join('\n');

const LISTEN = '0A';
const CLOSE = '07';

/** PROBE_SCRIPT's output → one line per reason the checkpoint would fail (none: go ahead). */
export function checkpointBlockers(probe: string): string[] {
  const [procs = '', tables = ''] = probe.split(/^---$/m);
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
  let proc = '';
  let epoll = false;
  let sockets: string[] = [];
  const flush = () => {
    if (epoll && sockets.some((s) => tcpInodes.has(s))) found.push(`epoll on a TCP socket in ${proc}`);
  };
  for (const line of procs.split('\n')) {
    if (line.startsWith('P ')) {
      flush();
      proc = `pid ${line.slice(2).trim()}`;
      epoll = false;
      sockets = [];
    } else if (line.startsWith('F ')) {
      if (line.includes('[eventpoll]')) epoll = true;
      const inode = /^F socket:\[(\d+)\]$/.exec(line)?.[1];
      if (inode) sockets.push(inode);
    }
  }
  flush();
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
