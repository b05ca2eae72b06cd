/**
 * The host firewall for sandboxes, as reviewed data (nftables, family inet so that IPv4 and
 * IPv6 share one rule set). Applied at every start as one transaction (`nft -f`): the base
 * chains are declared, flushed and filled again, while the per-sandbox egress chains and the
 * maps that lead to them (egress-rules.ts) are kept, so that a restart never leaves a
 * restricted sandbox open for a moment; reconcile then re-applies or removes them.
 * Sandbox-to-sandbox traffic on the bridge itself is cut by bridge port isolation (see
 * network.ts); these rules cover what is routed.
 */
export function firewallRules(opts: {
  table: string;
  bridge: string;
  subnet: string;
  /** Cove's runtime services (src/services), served on the bridge's host address. */
  services?: { address: string; port: number };
  /** Agents' PostgreSQL server on the bridge's host address (src/services/databases). */
  databases?: { port: number };
  /** Where the egress proxy and DNS relay listen on the bridge's address (egress-rules.ts). */
  egressPorts: { dns: number; http: number; tls: number; tunnel: number };
}): string {
  const { table, bridge, subnet, services, databases, egressPorts: p } = opts;
  const gateway = services?.address ?? subnet.replace(/\.0\.0\/16$/, '.0.1');
  const chains = ['input', 'forward', 'prerouting', 'postrouting'];
  return `
table inet ${table} {
  # sandbox address -> its egress chains (egress-rules.ts)
  map egress { type ipv4_addr : verdict; }
  map egress_nat { type ipv4_addr : verdict; }
  # sandboxes given a database (src/services/databases/access.ts), kept over restarts as the maps
  set db_clients { type ipv4_addr; }
  chain input { type filter hook input priority filter - 1; policy accept; }
  chain forward { type filter hook forward priority filter - 1; policy accept; }
  chain prerouting { type nat hook prerouting priority dstnat; policy accept; }
  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }
}
${chains.map((c) => `flush chain inet ${table} ${c}`).join('\n')}
table inet ${table} {
  chain input {
    # replies to connections the host opened (port proxy, health checks)
    iifname "${bridge}" ct state established,related accept
    # the one host service a sandbox may call: models, memory, search (src/services), token-checked
    ${services ? `iifname "${bridge}" ip daddr ${services.address} tcp dport ${services.port} accept` : ''}
    # the database server: only sandboxes created with a database; its roles' passwords do the rest
    ${databases ? `iifname "${bridge}" ip daddr ${gateway} tcp dport ${databases.port} ip saddr @db_clients accept` : ''}
    ${databases ? `iifname != "lo" iifname != "${bridge}" ip daddr ${gateway} tcp dport ${databases.port} drop` : ''}
    # the DNS relay and the egress proxy, only for what a sandbox's policy redirected there
    iifname "${bridge}" ct status dnat udp dport ${p.dns} accept
    iifname "${bridge}" ct status dnat tcp dport { ${p.http}, ${p.tls}, ${p.tunnel} } accept
    # a sandbox never reaches a service of the host, on any of the host's addresses
    iifname "${bridge}" drop
  }
  chain forward {
    # cloud metadata endpoints and other link-local services
    iifname "${bridge}" ip daddr 169.254.0.0/16 drop
    # another sandbox, through the router instead of the bridge
    iifname "${bridge}" ip daddr ${subnet} drop
    # sandboxes have no IPv6 (disabled in their namespace); nothing v6 leaves them
    iifname "${bridge}" meta nfproto ipv6 drop
    # the sandbox's own egress policy, when it has one
    iifname "${bridge}" ip saddr vmap @egress
  }
  chain prerouting {
    iifname "${bridge}" ip saddr vmap @egress_nat
  }
  chain postrouting {
    ip saddr ${subnet} oifname != "${bridge}" masquerade
  }
}
`;
}
