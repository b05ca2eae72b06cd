import { describe, expect, it } from 'vitest';
import { findOriginal, originalTarget } from './conntrack.ts';

const conn = { source: '10.12.0.2', sourcePort: 40000, proxy: '10.12.0.1', proxyPort: 35001 };
const line = (state: string, dst: string, dport: number, proxyPort: number, flag = '[ASSURED] ') =>
  `ipv4     2 tcp      6 100 ${state} src=10.12.0.2 dst=${dst} sport=40000 dport=${dport} ` +
  `${flag === '[UNREPLIED] ' ? flag : ''}src=10.12.0.1 dst=10.12.0.2 sport=${proxyPort} dport=40000 ` +
  `${flag === '[UNREPLIED] ' ? '' : flag}mark=0 zone=0 use=2\n`;

describe('conntrack lookup of a redirected connection', () => {
  it('finds the entry by its reply tuple, not a stale one of the same source port', () => {
    const table =
      // an earlier connection from the same address and port (an older sandbox of the slot),
      // to a host address: by source alone, this one came first and the connection was reset
      line('TIME_WAIT', '10.12.0.1', 49990, 35002) +
      line('ESTABLISHED', '198.51.100.20', 443, 35003) +
      line('ESTABLISHED', '198.51.100.10', 80, 35001);
    expect(findOriginal(table, conn)).toEqual({ address: '198.51.100.10', port: 80 });
    expect(findOriginal(table, { ...conn, proxyPort: 35009 })).toBeUndefined();
  });

  it('finds a connection whose source port NAT changed to keep reply tuples apart', () => {
    // A sandbox reused port 41001 while the entry of its last redirected connection from it
    // lingered (CLOSE): the new one's reply tuple would have clashed, so NAT gave it 13271,
    // the port the proxy sees. By the original tuple it is not there at all.
    const table =
      'ipv4     2 tcp      6 9 CLOSE src=10.12.0.2 dst=169.254.169.254 sport=41001 dport=80 src=10.12.0.1 dst=10.12.0.2 sport=35001 dport=41001 [ASSURED] mark=0 zone=0 use=2\n' +
      'ipv4     2 tcp      6 431999 ESTABLISHED src=10.12.0.2 dst=198.51.100.10 sport=41001 dport=80 src=10.12.0.1 dst=10.12.0.2 sport=35001 dport=13271 [ASSURED] mark=0 zone=0 use=2\n';
    expect(findOriginal(table, { ...conn, sourcePort: 13271 })).toEqual({
      address: '198.51.100.10',
      port: 80,
    });
    expect(findOriginal(table, { ...conn, sourcePort: 41001 })).toEqual({
      address: '169.254.169.254',
      port: 80,
    });
  });

  it('matches the reply tuple only in the reply position, and only TCP', () => {
    const udp = line('ESTABLISHED', '198.51.100.10', 80, 35001).replace(' tcp      6 ', ' udp      17 ');
    expect(findOriginal(udp, conn)).toBeUndefined();
    // an entry whose ORIGINAL tuple looks like the reply (a connection from the proxy's address)
    const reversed = `ipv4     2 tcp      6 100 ESTABLISHED src=10.12.0.1 dst=10.12.0.2 sport=35001 dport=40000 src=10.12.0.2 dst=10.12.0.1 sport=40000 dport=35001 [ASSURED] mark=0 use=2\n`;
    expect(findOriginal(reversed, conn)).toBeUndefined();
    expect(findOriginal(line('SYN_RECV', '203.0.113.10', 443, 35001, '[UNREPLIED] '), conn)).toEqual({
      address: '203.0.113.10',
      port: 443,
    });
    expect(findOriginal(line('ESTABLISHED', '198.51.100.10', 80, 35001).trimEnd(), conn)).toEqual({
      address: '198.51.100.10',
      port: 80,
    });
  });

  it('reads the table again when a dump missed the entry', async () => {
    const reads = ['', '', line('ESTABLISHED', '198.51.100.10', 80, 35001)];
    let n = 0;
    const found = await originalTarget(conn, () => Promise.resolve(reads[n++] ?? ''));
    expect(found).toEqual({ address: '198.51.100.10', port: 80 });
    expect(n).toBe(3);
    n = 0;
    expect(await originalTarget(conn, () => Promise.resolve(String(n++ && '')))).toBeUndefined();
    expect(n).toBe(4); // the first read and three more, then it is gone
  });
});
