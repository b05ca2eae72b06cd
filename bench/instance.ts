/**
 * The prefix of everything the bench makes on the host: its Cove instance (bridge, namespaces,
 * veths, cgroups, crun root), the crun peer's state root and cgroup parent, podman's label and
 * container names. `coveb` unless BENCH_INSTANCE says otherwise (1–8 lowercase letters), so
 * that two benches on one host (or a bench beside a test run) do not reconcile or clean up
 * each other's sandboxes and containers; give the second one its own BENCH_SUBNET too.
 */
export const BENCH_INSTANCE = process.env.BENCH_INSTANCE ?? 'coveb';
if (!/^[a-z]{1,8}$/.test(BENCH_INSTANCE)) throw new Error('BENCH_INSTANCE: 1-8 lowercase letters');
