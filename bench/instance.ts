import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostDeps } from '../src/manager/host.ts';
import { createNetwork } from '../src/network/network.ts';
import type { RuntimeSet } from '../src/runtime/set.ts';

/**
 * The prefix of everything the bench makes on the host: its Cove instance (bridge, namespaces,
 * veths, cgroups, crun root), the crun peer's state root and cgroup parent, podman's label and
 * container names. `coveb` unless BENCH_INSTANCE says otherwise (1–8 lowercase letters), so
 * that two benches on one host (or a bench beside a test run) do not reconcile or clean up
 * each other's sandboxes and containers; give the second one its own BENCH_SUBNET too.
 */
export const BENCH_INSTANCE = process.env.BENCH_INSTANCE ?? 'coveb';
if (!/^[a-z]{1,8}$/.test(BENCH_INSTANCE)) throw new Error('BENCH_INSTANCE: 1-8 lowercase letters');

/**
 * The host side of a bench that drives one backend directly (bench/microvm.ts, bench/runsc.ts):
 * a sandboxes directory of its own under /tmp (the caller removes `home`) and the bench
 * Cove's network, on which it takes slots of its own.
 */
export async function benchHost(
  name: string,
  runtime: RuntimeSet,
  net: { instance: string; subnet16: string },
  repo: string,
): Promise<{ deps: HostDeps; home: string }> {
  const home = join('/tmp', `coveb-${name}-${randomBytes(4).toString('hex')}`);
  await mkdir(join(home, 'sandboxes'), { recursive: true, mode: 0o711 });
  const deps: HostDeps = {
    runtime,
    network: createNetwork({ name: net.instance, prefix16: net.subnet16 }),
    sandboxesDir: join(home, 'sandboxes'),
    agentBinary: join(repo, 'agent', 'build', 'cove-agent'),
    mountHelper: join(repo, 'agent', 'build', 'cove-mount'),
  };
  return { deps, home };
}
