import { describe, expect, it } from 'vitest';
import { checkpointBlockers } from './tcp.ts';

const header =
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const row = (local: string, remote: string, st: string, inode: number) =>
  `   1: ${local} ${remote} ${st} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0 0 0 0 0 -1`;
/** What PROBE_SCRIPT prints: `ls -l` of every fd directory, the TCP tables, `head` of every comm. */
function probe(procs: Array<{ pid: number; name: string; fds: string[] }>, rows: string[]): string {
  const fds = procs.flatMap((p) => [
    `/proc/${p.pid}/fd/:`,
    'total 0',
    ...p.fds.map((f, i) => `lrwx------ 1 root root 64 Nov 25 17:30 ${i} -> ${f}`),
    '',
  ]);
  const comms = procs.flatMap((p) => [`==> /proc/${p.pid}/comm <==`, p.name, '']);
  return [...fds, '---', header, ...rows, '---', ...comms].join('\n');
}

describe('what stops a gVisor checkpoint', () => {
  it('lets listening, closed and loopback sockets through when no epoll watches them', () => {
    const text = probe(
      [
        { pid: 1, name: 'agent', fds: ['socket:[1]', 'anon_inode:[signalfd]'] },
        { pid: 7, name: 'python3', fds: ['socket:[10]'] },
      ],
      [
        row('00000000:1F40', '00000000:0000', '0A', 10), // listening on 0.0.0.0:8000
        row('00000000:1F41', '00000000:0000', '07', 11), // bound, not listening
        row('0100007F:F6EB', '0100007F:232A', '01', 12), // 127.0.0.1 ↔ 127.0.0.1
        row('00000000000000000000000001000000:1F40', '00000000000000000000000001000000:A000', '01', 13), // ::1
      ],
    );
    expect(checkpointBlockers(text)).toEqual([]);
  });

  it('names a connection over eth0, in any state but LISTEN and CLOSE', () => {
    const text = probe(
      [],
      [row('0200FA0A:1F41', '0100FA0A:C350', '01', 3), row('0200FA0A:1F42', '0100FA0A:C351', '08', 4)],
    );
    expect(checkpointBlockers(text)).toEqual([
      'a TCP connection 0200FA0A:1F41 → 0100FA0A:C350 (state 01)',
      'a TCP connection 0200FA0A:1F42 → 0100FA0A:C351 (state 08)',
    ]);
  });

  it('names a process whose epoll may watch a TCP socket (a Node server), not one with epoll and pipes only', () => {
    const text = probe(
      [
        { pid: 16, name: 'node', fds: ['pipe:[11]', 'anon_inode:[eventpoll]', 'socket:[10]'] },
        { pid: 20, name: 'tail', fds: ['anon_inode:[eventpoll]', 'pipe:[12]'] },
      ],
      [row('00000000:1F90', '00000000:0000', '0A', 10)],
    );
    expect(checkpointBlockers(text)).toEqual(['epoll on a TCP socket in pid 16 (node)']);
  });
  it("reads the agent's own probe (agent/src/probe.c) as the shell's", () => {
    const text = [
      '/proc/16/fd/:',
      'fd 0 -> pipe:[11]',
      'fd 3 -> anon_inode:[eventpoll]',
      'fd 4 -> socket:[10]',
      '---',
      header,
      row('00000000:1F90', '00000000:0000', '0A', 10),
      '---',
      '==> /proc/16/comm <==',
      'node',
      '',
    ].join('\n');
    expect(checkpointBlockers(text)).toEqual(['epoll on a TCP socket in pid 16 (node)']);
  });
});
