import { basename } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import { readAddresses } from '../runsc/netns.ts';

export const TAP = 'tap0';
const BRIDGE = 'br0';

/**
 * The guest takes eth0's address: inside the sandbox's namespace eth0 (the veth to Cove's
 * bridge) and a tap join a bridge, and QEMU's NIC sits on the tap; the host's view (address,
 * veth, nftables rules) is the same as for a container. Returns the address the guest takes.
 */
export async function plumbTap(netns: string): Promise<{ address: string; gateway?: string }> {
  const eth0 = await readAddresses(netns);
  const address = eth0.addresses[0];
  if (!address) throw new CoveError('internal', `network namespace ${netns}: eth0 has no address`);
  await run('ip', ['-n', basename(netns), '-batch', '-'], {
    input: [
      'addr flush dev eth0',
      `link add ${BRIDGE} type bridge`,
      `link set eth0 master ${BRIDGE}`,
      `tuntap add dev ${TAP} mode tap`,
      `link set ${TAP} master ${BRIDGE}`,
      `link set ${TAP} up`,
      `link set ${BRIDGE} up`,
    ].join('\n'),
  });
  return { address, ...(eth0.gateway && { gateway: eth0.gateway }) };
}
