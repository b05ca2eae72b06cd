import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { readFile, writeFile } from 'node:fs/promises';
import { CoveError } from '../core/errors.ts';
import { run } from '../core/exec.ts';
import { egressPolicy, restricts, type EgressPolicy, type SandboxNetwork } from './egress-policy.ts';
import type { InterceptOptions } from './egress-intercept.ts';
import { startEgressProxy, type EgressProxy } from './egress-proxy.ts';
import { applyRules, clearRules, policySlots } from './egress-rules.ts';
import { plumb } from './plumb.ts';
import { firewallRules } from './policy.ts';
import { interfaceAddresses, subnetClash } from './subnet.ts';

/**
 * A sandbox's place on the network. Slot `index` gives the address (10.11.0.0/16 + 2 + index),
 * the host end of its veth (`<name>-<index>`, alias `<name>-<id>`) and the named network
 * namespace `<name>-<id>`, where `<name>` is the instance name (`cove` by default). The namespace is the object created first and removed last: it is the record
 * of what may have leaked, and reclaim starts from the list of `<name>-*` namespaces.
 */
export interface Slot {
  index: number;
  address: string;
  gateway: string;
  prefix: number;
  hostVeth: string;
  netns: string;
}

export interface Network {
  readonly maxSlots: number;
  /** Bridge, its address, forwarding and the firewall. Idempotent; run at every start. */
  init(): Promise<void>;
  slot(index: number, id: string): Slot;
  /**
   * Names the network namespace of process `pid` and plumbs it: veth, address, route. Without
   * `pid`, makes a new namespace of that name instead (for runtimes that join one at create).
   * `alongside` runs while it is plumbed (plumb.ts): the runtime's start, since nothing in a
   * new sandbox uses its network before create returns. Both are awaited; the first failure
   * is thrown.
   */
  attach(slot: Slot, id: string, pid?: number, alongside?: () => Promise<void>): Promise<void>;
  /** Removes the veth and the namespace name; succeeds when they are already gone. Takes a
   * slot, or what owners() found of a sandbox that has no record. */
  detach(target: { hostVeth?: string; netns?: string }): Promise<void>;
  /** Sandbox ids that own a namespace or a veth on this host. */
  owners(): Promise<Array<{ id: string; netns?: string; hostVeth?: string }>>;
  /**
   * Makes the sandbox's egress follow `network` (egress-rules.ts): one nft transaction that
   * replaces what it had, or removes it when nothing is restricted. New connections follow it
   * at once; open ones keep going. detach() removes it with the veth.
   */
  applyPolicy(slot: Slot, network: SandboxNetwork): Promise<void>;
  /** Removes the policy of every slot not in `live` (after reconcile: what a crash left). */
  prunePolicies(live: number[]): Promise<void>;
  /** Stops the egress proxy and DNS relay. Sandboxes and rules stay. */
  close(): Promise<void>;
}

export interface NetworkOptions {
  /** Prefix of every host object (bridge `<name>0`, veths, namespaces, nft table), so that
   * two Cove instances on one host (a test run beside a server) never touch each other's. */
  name: string;
  /** First two octets of the /16 the sandboxes live in. */
  prefix16?: string;
  /** The port of Cove's runtime services on the bridge address, which sandboxes may reach. */
  servicesPort?: number;
  /** The port of agents' PostgreSQL server on the bridge address (src/services/databases). */
  databasesPort?: number;
  /** DNS servers (`ip` or `ip:port`) the DNS relay and the egress proxy ask (COVE_DNS). */
  dns?: string[];
  /** How the egress proxy applies header rules (egress-intercept.ts); without it, it applies none. */
  intercept?: InterceptOptions;
}

/** Where `ip netns` keeps named namespaces: `<NETNS_DIR>/<slot.netns>` is a namespace's path. */
export const NETNS_DIR = '/run/netns';

export function createNetwork(opts: NetworkOptions): Network {
  const { name } = opts;
  if (!/^[a-z]{1,8}$/.test(name))
    throw new CoveError('invalid_argument', `network name ${name}: 1-8 lowercase letters`);
  const bridge = `${name}0`;
  const base = opts.prefix16 ?? '10.11';
  const subnet = `${base}.0.0/16`;
  const gateway = `${base}.0.1`;
  const maxSlots = 65_000;
  let proxy: EgressProxy | undefined;
  /** Policies by sandbox address, for the egress proxy and DNS relay. */
  const policies = new Map<string, EgressPolicy>();
  const slotAt = (index: number) => {
    const n = index + 2;
    return { table: name, slot: index, address: `${base}.${n >> 8}.${n & 255}` };
  };
  async function clearPolicy(index: number): Promise<void> {
    const ref = slotAt(index);
    policies.delete(ref.address);
    await run('nft', ['-f', '-'], { input: clearRules(ref) });
  }

  return {
    maxSlots,

    async init() {
      const clash = subnetClash(
        subnet,
        bridge,
        interfaceAddresses((await run('ip', ['-j', '-4', 'addr', 'show'])).stdout),
      );
      if (clash)
        throw new CoveError(
          'invalid_argument',
          `subnet ${subnet} overlaps ${clash.local}/${clash.prefixlen} on ${clash.ifname}: choose another with COVE_SUBNET, or remove that interface`,
        );
      const exists = await run('ip', ['link', 'show', bridge]).then(
        () => true,
        () => false,
      );
      if (!exists) await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
      // A bridge without an address of its own takes its lowest port's, so a killed sandbox
      // could change the gateway's MAC under the others (their ARP caches then point nowhere
      // for ~30 s): a fixed one, per instance.
      await run('ip', ['link', 'set', bridge, 'address', bridgeMac(name)]);
      const { stdout } = await run('ip', ['-4', '-o', 'addr', 'show', 'dev', bridge]);
      if (!stdout.includes(`${gateway}/16`)) await run('ip', ['addr', 'add', `${gateway}/16`, 'dev', bridge]);
      await run('ip', ['link', 'set', bridge, 'up']);
      await writeFile('/proc/sys/net/ipv4/ip_forward', '1');
      const services = opts.servicesPort ? { address: gateway, port: opts.servicesPort } : undefined;
      proxy ??= await startEgressProxy({
        address: gateway,
        policyOf: (address) => policies.get(address),
        dns: opts.dns?.length ? opts.dns : await hostNameservers(),
        ...(opts.intercept && { intercept: opts.intercept }),
      });
      await run('nft', ['-f', '-'], {
        input: firewallRules({
          table: name,
          bridge,
          subnet,
          ...(services && { services }),
          ...(opts.databasesPort && { databases: { port: opts.databasesPort } }),
          egressPorts: proxy.ports,
        }),
      });
    },

    slot(index: number, id: string): Slot {
      if (!Number.isInteger(index) || index < 0 || index >= maxSlots) {
        throw new CoveError('resource_exhausted', `no network slot ${index}: at most ${maxSlots} sandboxes`);
      }
      return {
        index,
        address: slotAt(index).address,
        gateway,
        prefix: 16,
        hostVeth: `${name}-${index}`,
        netns: `${name}-${id}`,
      };
    },

    async attach(slot: Slot, id: string, pid?: number, alongside?: () => Promise<void>) {
      await plumb(slot, id, { instance: name, bridge }, pid, alongside);
    },

    async detach(target) {
      // The host veth first: deleting it is synchronous, while a veth that goes with its
      // namespace vanishes later and its name cannot be reused at once.
      if (target.hostVeth) await run('ip', ['link', 'del', target.hostVeth]).catch(ignoreMissing);
      const index = target.hostVeth?.startsWith(`${name}-`)
        ? Number(target.hostVeth.slice(name.length + 1))
        : NaN;
      if (Number.isInteger(index) && policies.has(slotAt(index).address)) await clearPolicy(index);
      if (target.netns) await run('ip', ['netns', 'del', target.netns]).catch(ignoreMissing);
    },

    async owners() {
      const found = new Map<string, { id: string; netns?: string; hostVeth?: string }>();
      const names = await readdir(NETNS_DIR).catch(() => [] as string[]);
      const tag = `${name}-`;
      for (const ns of names) {
        if (ns.startsWith(tag)) found.set(ns.slice(tag.length), { id: ns.slice(tag.length), netns: ns });
      }
      const { stdout } = await run('ip', ['-j', 'link', 'show', 'type', 'veth']);
      for (const link of JSON.parse(stdout || '[]') as Array<{ ifname: string; ifalias?: string }>) {
        if (!link.ifalias?.startsWith(tag) || !/^\d+$/.test(link.ifname.slice(tag.length))) continue;
        const id = link.ifalias.slice(tag.length);
        found.set(id, { ...found.get(id), id, hostVeth: link.ifname });
      }
      return [...found.values()];
    },

    async applyPolicy(slot, network) {
      if (!proxy) throw new CoveError('internal', 'network.applyPolicy before init');
      const policy = egressPolicy(network);
      const ref = slotAt(slot.index);
      // An open sandbox in a slot with no rules (the common create) costs no nft call; rules a
      // crash left in a slot were pruned at start, and kill removes a sandbox's own.
      if (!restricts(policy)) return policies.has(ref.address) ? clearPolicy(slot.index) : undefined;
      await run('nft', ['-f', '-'], { input: applyRules(ref, policy, proxy.ports) });
      policies.set(ref.address, policy);
    },

    async prunePolicies(live) {
      const keep = new Set(live);
      const { stdout } = await run('nft', ['-j', 'list', 'table', 'inet', name]);
      for (const index of policySlots(stdout)) if (!keep.has(index)) await clearPolicy(index);
    },

    async close() {
      await proxy?.close();
      proxy = undefined;
    },
  };
}

/** The host's resolvers, for sandboxes under a policy (their DNS goes through the relay). */
async function hostNameservers(): Promise<string[]> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '');
  return [...text.matchAll(/^\s*nameserver\s+([\d.]+)\s*$/gm)].map((m) => m[1]!);
}

function ignoreMissing(err: unknown): void {
  const text = String((err as Error).message);
  if (/Cannot find device|No such file|does not exist|Cannot remove namespace file/.test(text)) return;
  throw err;
}

/** A locally administered unicast MAC, the same for an instance at every start. */
export function bridgeMac(name: string): string {
  const h = createHash('sha256').update(`cove-bridge\0${name}`).digest();
  return ['02', ...[...h.subarray(0, 5)].map((b) => b.toString(16).padStart(2, '0'))].join(':');
}
