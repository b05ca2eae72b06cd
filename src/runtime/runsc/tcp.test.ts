import { describe, expect, it } from 'vitest';
import { checkpointBlockers } from './tcp.ts';

const header =
  '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode';
const row = (local: string, remote: string, st: string, inode: number) =>
  `   1: ${local} ${remote} ${st} 00000000:00000000 00:00000000 00000000     0        0 ${inode} 1 0 0 0 0 0 -1`;
const probe = (procs: string[], rows: string[]) => [...procs, '---', header, ...rows].join('\n');

describe('what stops a gVisor checkpoint', () => {
  it('lets listening, closed and loopback sockets through when no epoll watches them', () => {
    const text = probe(
      [
        'P 1 /.cove/agent',
        'F socket:[1]',
        'F anon_inode:[signalfd]',
        'P 7 python3 server.py',
        'F socket:[10]',
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
        'P 16 node -e server',
        'F pipe:[11]',
        'F anon_inode:[eventpoll]',
        'F socket:[10]',
        'P 20 tail -f log',
        'F anon_inode:[eventpoll]',
        'F pipe:[12]',
      ],
      [row('00000000:1F90', '00000000:0000', '0A', 10)],
    );
    expect(checkpointBlockers(text)).toEqual(['epoll on a TCP socket in pid 16 node -e server']);
  });
});
