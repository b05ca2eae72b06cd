import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run } from '../core/exec.ts';
import type { Slot } from './network.ts';

/** agent/net/cove-net.c, built beside the agent; without it the same steps go through `ip`. */
const NET_HELPER = (() => {
  const path = fileURLToPath(new URL('../../agent/build/cove-net', import.meta.url));
  return existsSync(path) ? path : undefined;
})();

/**
 * Names the namespace, makes the veth (host end on the bridge, isolated; eth0 inside) and sets
 * the address and default route inside. With a `pid` (crun: the namespace is the sandbox's
 * own), one cove-net process does it over netlink (~0.5 ms of exec against two `ip -batch`
 * of ~2-3 ms each) while `alongside` (the runtime's start) runs; without one (runsc joins a
 * namespace made here), `ip netns add` and the same steps. The name comes first either way, so
 * that reclaim finds whatever a failure leaves. Both are awaited; the first failure is thrown.
 */
export async function plumb(
  slot: Slot,
  id: string,
  names: { instance: string; bridge: string },
  pid?: number,
  alongside?: () => Promise<void>,
): Promise<void> {
  const alias = `${names.instance}-${id}`;
  if (pid !== undefined && NET_HELPER) {
    const args = ['attach', slot.netns, String(pid), slot.hostVeth, alias, names.bridge];
    const net = run(NET_HELPER, [...args, slot.address, String(slot.prefix), slot.gateway]);
    return both(net, alongside?.());
  }
  await run('ip', ['-batch', '-'], {
    input: [
      pid === undefined ? `netns add ${slot.netns}` : `netns attach ${slot.netns} ${pid}`,
      `link add ${slot.hostVeth} type veth peer name eth0 netns ${slot.netns}`,
      `link set ${slot.hostVeth} alias ${alias}`,
      `link set ${slot.hostVeth} master ${names.bridge}`,
      // isolated ports forward only to non-isolated ones (the bridge itself): no
      // sandbox-to-sandbox frames at layer 2
      `link set ${slot.hostVeth} type bridge_slave isolated on`,
      `link set ${slot.hostVeth} up`,
      // The slot's address may have served a sandbox killed seconds ago: the bridge's
      // neighbour entry would still name that one's MAC, and the host's connections (port
      // proxy, readiness probe) would go nowhere until it expired (~10 s).
      `neigh flush to ${slot.address} dev ${names.bridge}`,
    ].join('\n'),
  });
  const inside = run('ip', ['-n', slot.netns, '-batch', '-'], {
    input: [
      'link set lo up',
      `addr add ${slot.address}/${slot.prefix} dev eth0`,
      'link set eth0 up',
      `route add default via ${slot.gateway}`,
    ].join('\n'),
  });
  return both(inside, alongside?.());
}

async function both(a: Promise<unknown>, b: Promise<unknown> | undefined): Promise<void> {
  const [x, y] = await Promise.allSettled([a, b]);
  if (x.status === 'rejected') throw x.reason;
  if (y.status === 'rejected') throw y.reason;
}
