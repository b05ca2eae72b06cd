import type { EgressPolicy } from './egress-policy.ts';

/**
 * One sandbox's egress policy as nftables data, in the instance's table beside the base
 * firewall (policy.ts). Two chains per slot, reached through the table's verdict maps keyed by
 * the sandbox's address, so the base chains never change when a sandbox's policy does:
 * - `egress-nat-<slot>` (from prerouting, NAT: only a connection's first packet passes):
 *   allowed CIDRs go straight out; DNS goes to Cove's relay, so that names resolve whatever
 *   resolver the sandbox names; ports 80 and 443 go to the egress proxy when domains are
 *   allowed, which reads the Host or the TLS SNI and connects only to allowed names, and
 *   when header rules are set, which the proxy applies to the ruled domains' requests. With an
 *   upstream proxy (egressProxy) every TCP connection goes to the proxy, before the allowed
 *   CIDRs' shortcut: ports 80/443 as above, any other port to its tunnel listener.
 * - `egress-<slot>` (from forward): packets of established connections pass (an update
 *   applies to new connections); allowed CIDRs pass (allow wins over deny, spec 2.11); denied
 *   ones are refused with a TCP reset or an ICMP "administratively prohibited", so a denied
 *   connect fails at once instead of hanging.
 * Applying writes both chains and the map entries in one `nft -f` transaction: a sandbox is
 * never seen half-configured. Link-local, the host and other sandboxes stay refused by the
 * base firewall before any of this, whatever the policy allows.
 */
export interface EgressPorts {
  dns: number;
  http: number;
  tls: number;
  /** Any TCP port of a sandbox with an upstream proxy. */
  tunnel: number;
}

export interface SlotRef {
  table: string;
  slot: number;
  address: string;
}

const filterChain = (slot: number) => `egress-${slot}`;
const natChain = (slot: number) => `egress-nat-${slot}`;
const set = (cidrs: string[]) => `{ ${cidrs.join(', ')} }`;

/** The transaction that installs (or replaces) a sandbox's policy. */
export function applyRules(ref: SlotRef, policy: EgressPolicy, ports: EgressPorts): string {
  const { table, slot, address } = ref;
  const f = filterChain(slot);
  const n = natChain(slot);
  const lines = [
    `add chain inet ${table} ${f}`,
    `flush chain inet ${table} ${f}`,
    `add chain inet ${table} ${n}`,
    `flush chain inet ${table} ${n}`,
    // replies and the rest of connections opened under an earlier policy
    `add rule inet ${table} ${f} ct state established,related accept`,
  ];
  const proxied = policy.allowDomains.length > 0 || Object.keys(policy.rules).length > 0 || policy.upstream;
  const webToProxy = () => {
    lines.push(`add rule inet ${table} ${n} tcp dport 80 redirect to :${ports.http}`);
    lines.push(`add rule inet ${table} ${n} tcp dport 443 redirect to :${ports.tls}`);
  };
  if (policy.upstream) {
    // UDP (DNS, QUIC) is not tunnelled: as upstream documents, it leaves the usual way.
    webToProxy();
    // not Cove's own services on the bridge (runtime services, databases): those stay local
    const own = `${address.split('.').slice(0, 2).join('.')}.0.0/16`;
    lines.push(
      `add rule inet ${table} ${n} ip daddr != ${own} meta l4proto tcp redirect to :${ports.tunnel}`,
    );
  }
  if (policy.allowCidrs.length > 0) {
    lines.push(`add rule inet ${table} ${n} ip daddr ${set(policy.allowCidrs)} return`);
    lines.push(`add rule inet ${table} ${f} ip daddr ${set(policy.allowCidrs)} accept`);
  }
  // A sandbox that may reach nothing gets no DNS either: a resolver is a way out too.
  const reachesSomething =
    policy.allowCidrs.length + policy.allowDomains.length > 0 || !policy.denyCidrs.includes('0.0.0.0/0');
  if (reachesSomething) lines.push(`add rule inet ${table} ${n} udp dport 53 redirect to :${ports.dns}`);
  if (proxied && !policy.upstream) webToProxy();
  if (policy.denyCidrs.length > 0) {
    const denied = `ip daddr ${set(policy.denyCidrs)}`;
    lines.push(`add rule inet ${table} ${f} ${denied} meta l4proto tcp reject with tcp reset`);
    lines.push(`add rule inet ${table} ${f} ${denied} reject with icmpx type admin-prohibited`);
  }
  lines.push(
    `add element inet ${table} egress { ${address} : jump ${f} }`,
    `add element inet ${table} egress_nat { ${address} : jump ${n} }`,
  );
  return `${lines.join('\n')}\n`;
}

/**
 * The transaction that removes a sandbox's policy; it succeeds when there is none (each
 * object is added before it is deleted, which nft accepts in one transaction).
 */
export function clearRules(ref: SlotRef): string {
  const { table, slot, address } = ref;
  const f = filterChain(slot);
  const n = natChain(slot);
  return `${[
    `add chain inet ${table} ${f}`,
    `add chain inet ${table} ${n}`,
    `add element inet ${table} egress { ${address} : jump ${f} }`,
    `delete element inet ${table} egress { ${address} }`,
    `add element inet ${table} egress_nat { ${address} : jump ${n} }`,
    `delete element inet ${table} egress_nat { ${address} }`,
    `flush chain inet ${table} ${f}`,
    `flush chain inet ${table} ${n}`,
    `delete chain inet ${table} ${f}`,
    `delete chain inet ${table} ${n}`,
  ].join('\n')}\n`;
}

/** Slots that have a policy chain in the table, from `nft -j list table inet <table>`. */
export function policySlots(listing: string): number[] {
  const parsed = JSON.parse(listing || '{}') as { nftables?: Array<{ chain?: { name?: string } }> };
  const slots = new Set<number>();
  for (const item of parsed.nftables ?? []) {
    const m = /^egress-(?:nat-)?(\d+)$/.exec(item.chain?.name ?? '');
    if (m) slots.add(Number(m[1]));
  }
  return [...slots];
}
