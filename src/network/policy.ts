/**
 * The host firewall for sandboxes, as reviewed data (nftables, family inet so that IPv4 and
 * IPv6 share one rule set). Replaced atomically at every start: `nft -f` applies the file as
 * one transaction. Sandbox-to-sandbox traffic on the bridge itself is cut by bridge port
 * isolation (see network.ts); these rules cover what is routed.
 */
export function firewallRules(opts: {
  table: string;
  bridge: string;
  subnet: string;
  /** Cove's runtime services (src/services), served on the bridge's host address. */
  services?: { address: string; port: number };
}): string {
  const { table, bridge, subnet, services } = opts;
  return `
table inet ${table}
delete table inet ${table}
table inet ${table} {
  chain input {
    type filter hook input priority filter - 1; policy accept;
    # replies to connections the host opened (port proxy, health checks)
    iifname "${bridge}" ct state established,related accept
    # the one host service a sandbox may call: models, memory, search (src/services), token-checked
    ${services ? `iifname "${bridge}" ip daddr ${services.address} tcp dport ${services.port} accept` : ''}
    # a sandbox never reaches a service of the host, on any of the host's addresses
    iifname "${bridge}" drop
  }
  chain forward {
    type filter hook forward priority filter - 1; policy accept;
    # cloud metadata endpoints and other link-local services
    iifname "${bridge}" ip daddr 169.254.0.0/16 drop
    # another sandbox, through the router instead of the bridge
    iifname "${bridge}" ip daddr ${subnet} drop
    # sandboxes have no IPv6 (disabled in their namespace); nothing v6 leaves them
    iifname "${bridge}" meta nfproto ipv6 drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr ${subnet} oifname != "${bridge}" masquerade
  }
}
`;
}
