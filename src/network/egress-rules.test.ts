import { describe, expect, it } from 'vitest';
import { egressPolicy, parseNetwork } from './egress-policy.ts';
import { applyRules, clearRules, policySlots } from './egress-rules.ts';

const ref = { table: 'covt', slot: 7, address: '10.43.0.9' };
const ports = { dns: 5300, http: 8000, tls: 8443, tunnel: 8100 };

describe('egress rules as nft data', () => {
  it('allow-listed CIDRs go out, domains through the proxy, the rest is refused at once', () => {
    const text = applyRules(
      ref,
      egressPolicy(parseNetwork({ allowOut: ['198.51.100.7', '*.test'], denyOut: ['0.0.0.0/0'] })),
      ports,
    );
    expect(text).toBe(`add chain inet covt egress-7
flush chain inet covt egress-7
add chain inet covt egress-nat-7
flush chain inet covt egress-nat-7
add rule inet covt egress-7 ct state established,related accept
add rule inet covt egress-nat-7 ip daddr { 198.51.100.7/32 } return
add rule inet covt egress-7 ip daddr { 198.51.100.7/32 } accept
add rule inet covt egress-nat-7 udp dport 53 redirect to :5300
add rule inet covt egress-nat-7 tcp dport 80 redirect to :8000
add rule inet covt egress-nat-7 tcp dport 443 redirect to :8443
add rule inet covt egress-7 ip daddr { 0.0.0.0/0 } meta l4proto tcp reject with tcp reset
add rule inet covt egress-7 ip daddr { 0.0.0.0/0 } reject with icmpx type admin-prohibited
add element inet covt egress { 10.43.0.9 : jump egress-7 }
add element inet covt egress_nat { 10.43.0.9 : jump egress-nat-7 }
`);
  });

  it('an upstream proxy takes every TCP connection, allowed CIDRs included; UDP as before', () => {
    const network = parseNetwork({ allowOut: ['198.51.100.7'], egressProxy: { address: 'p.test:1080' } });
    const nat = applyRules(ref, egressPolicy(network), ports)
      .split('\n')
      .filter((l) => l.startsWith('add rule inet covt egress-nat-7 '));
    expect(nat).toEqual([
      'add rule inet covt egress-nat-7 tcp dport 80 redirect to :8000',
      'add rule inet covt egress-nat-7 tcp dport 443 redirect to :8443',
      'add rule inet covt egress-nat-7 ip daddr != 10.43.0.0/16 meta l4proto tcp redirect to :8100',
      'add rule inet covt egress-nat-7 ip daddr { 198.51.100.7/32 } return',
      'add rule inet covt egress-nat-7 udp dport 53 redirect to :5300',
    ]);
  });

  it('a sandbox with the internet off gets no DNS either', () => {
    const text = applyRules(ref, egressPolicy(parseNetwork({ allowInternetAccess: false })), ports);
    expect(text).not.toMatch(/dport 53/);
    expect(text).toMatch(/ip daddr \{ 0.0.0.0\/0 \} meta l4proto tcp reject/);
  });

  it('clears idempotently, and finds the slots that have rules', () => {
    expect(clearRules(ref).split('\n')[2]).toBe('add element inet covt egress { 10.43.0.9 : jump egress-7 }');
    const listing = JSON.stringify({
      nftables: [
        { chain: { name: 'forward' } },
        { chain: { name: 'egress-3' } },
        { chain: { name: 'egress-nat-3' } },
        { chain: { name: 'egress-12' } },
      ],
    });
    expect(policySlots(listing).sort()).toEqual([12, 3]);
  });
});
