/** One IPv4 address of an interface, as `ip -j -4 addr show` lists it. */
export interface InterfaceAddress {
  ifname: string;
  local: string;
  prefixlen: number;
}

const toInt = (ip: string): number => ip.split('.').reduce((n, octet) => n * 256 + Number(octet), 0);

/**
 * The first address of another interface whose network overlaps `subnet` (a.b.0.0/16). Two
 * interfaces routing the same addresses make the kernel pick one route: the sandboxes behind
 * the other become unreachable from the host (its port proxy and readiness probes time out),
 * which is far harder to diagnose than a refusal at start.
 */
export function subnetClash(
  subnet: string,
  bridge: string,
  addrs: InterfaceAddress[],
): InterfaceAddress | undefined {
  const [net, bits] = subnet.split('/');
  const ours = toInt(net!);
  return addrs.find((a) => {
    if (a.ifname === bridge) return false;
    const prefix = Math.min(Number(bits), a.prefixlen);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return (toInt(a.local) & mask) >>> 0 === (ours & mask) >>> 0;
  });
}

/** `ip -j -4 addr show` flattened to one entry per address. */
export function interfaceAddresses(json: string): InterfaceAddress[] {
  const links = JSON.parse(json) as { ifname: string; addr_info?: { local: string; prefixlen: number }[] }[];
  return links.flatMap((l) =>
    (l.addr_info ?? []).map((a) => ({ ifname: l.ifname, local: a.local, prefixlen: a.prefixlen })),
  );
}
