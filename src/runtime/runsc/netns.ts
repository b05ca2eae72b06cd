import { basename } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';

/** eth0's IPv4 addresses (`a.b.c.d/len`) and default gateway in a named network namespace. */
export interface Eth0 {
  addresses: string[];
  gateway?: string;
}

/** `/run/netns/<name>` → `<name>`, which is what `ip -n` takes. */
function nsName(path: string): string {
  return basename(path);
}

export async function readAddresses(netns: string): Promise<Eth0> {
  const ns = nsName(netns);
  const { stdout: addr } = await run('ip', ['-n', ns, '-j', '-4', 'addr', 'show', 'dev', 'eth0']);
  const links = JSON.parse(addr || '[]') as Array<{
    addr_info?: Array<{ local: string; prefixlen: number }>;
  }>;
  const addresses = links.flatMap((l) => (l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`));
  const { stdout: routes } = await run('ip', ['-n', ns, '-j', '-4', 'route', 'show', 'default']);
  const gateway = (JSON.parse(routes || '[]') as Array<{ gateway?: string }>)[0]?.gateway;
  return { addresses, ...(gateway && { gateway }) };
}

/**
 * runsc takes eth0's addresses and routes into its own network stack and leaves eth0 without
 * them; a restore into that namespace reads eth0 again, so they are put back when missing.
 * Returns what eth0 holds afterwards.
 */
export async function restoreAddresses(netns: string, saved: Eth0 | undefined): Promise<Eth0> {
  const now = await readAddresses(netns);
  if (now.addresses.length > 0) return now;
  if (!saved || saved.addresses.length === 0)
    throw new CoveError('internal', `network namespace ${netns}: eth0 has no address and none was saved`);
  const lines = saved.addresses.map((a) => `addr add ${a} dev eth0`);
  if (saved.gateway) lines.push(`route replace default via ${saved.gateway}`);
  await run('ip', ['-n', nsName(netns), '-batch', '-'], { input: lines.join('\n') });
  return saved;
}

/**
 * Puts `saved` back on eth0 (one `ip`; `replace` leaves what is already there): after a
 * checkpoint, for a restore into the same namespace (runsc.ts removeCheckpointed).
 */
export async function putAddressesBack(netns: string, saved: Eth0): Promise<void> {
  if (saved.addresses.length === 0) return;
  const lines = saved.addresses.map((a) => `addr replace ${a} dev eth0`);
  if (saved.gateway) lines.push(`route replace default via ${saved.gateway}`);
  await run('ip', ['-n', nsName(netns), '-batch', '-'], { input: lines.join('\n') });
}
