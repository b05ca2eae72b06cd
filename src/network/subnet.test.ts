import { describe, expect, it } from 'vitest';
import { interfaceAddresses, subnetClash } from './subnet.ts';

describe('subnetClash', () => {
  const addrs = [
    { ifname: 'lo', local: '127.0.0.1', prefixlen: 8 },
    { ifname: 'eth0', local: '192.0.2.2', prefixlen: 24 },
    { ifname: 'old0', local: '10.31.0.1', prefixlen: 16 },
    { ifname: 'vpn0', local: '10.40.7.1', prefixlen: 24 },
    { ifname: 'wide0', local: '172.16.0.1', prefixlen: 12 },
  ];

  it('names another interface on the same /16, or inside it, or around it', () => {
    expect(subnetClash('10.31.0.0/16', 'covk0', addrs)?.ifname).toBe('old0');
    expect(subnetClash('10.40.0.0/16', 'covk0', addrs)?.ifname).toBe('vpn0');
    expect(subnetClash('172.20.0.0/16', 'covk0', addrs)?.ifname).toBe('wide0');
  });

  it('ignores the bridge itself and networks that do not overlap', () => {
    expect(subnetClash('10.31.0.0/16', 'old0', addrs)).toBeUndefined();
    expect(subnetClash('10.12.0.0/16', 'covet0', addrs)).toBeUndefined();
  });

  it('reads ip -j output', () => {
    const json = JSON.stringify([
      { ifname: 'lo', addr_info: [{ local: '127.0.0.1', prefixlen: 8 }] },
      { ifname: 'down0' },
      {
        ifname: 'br0',
        addr_info: [
          { local: '10.1.0.1', prefixlen: 16 },
          { local: '10.2.0.1', prefixlen: 16 },
        ],
      },
    ]);
    expect(interfaceAddresses(json).map((a) => `${a.ifname} ${a.local}/${a.prefixlen}`)).toEqual([
      'lo 127.0.0.1/8',
      'br0 10.1.0.1/16',
      'br0 10.2.0.1/16',
    ]);
  });
});
