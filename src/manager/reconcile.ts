import { readdir } from 'node:fs/promises';
import type { Logger } from '../core/log.ts';
import type { SandboxRecord, Store } from '../store/store.ts';
import { teardown, type HostDeps } from './host.ts';
import { applyNetwork } from './network.ts';

export interface ReconcileReport {
  adopted: string[];
  /** Records whose sandbox died while Cove was away, or whose create/kill was interrupted. */
  removed: string[];
  /** Host objects (runtime state, network, directories) that no record owns. */
  orphans: string[];
}

/**
 * Compares the store with what the host really runs, once at start:
 * - a record in `running` whose sandbox still runs is adopted (its agent reconnected);
 * - a record in `paused` is kept (pause.ts, adopt: a frozen one whose processes are gone
 *   becomes a filesystem-only pause; one whose layer is gone is removed);
 * - a record in `starting` or `killing` was never acknowledged or was half-killed: removed;
 * - a record whose sandbox is gone (host reboot, OOM of PID 1) is removed with its leftovers;
 * - runtime state, network namespaces, veths and sandbox directories that no record owns
 *   are removed: they are what a crash between two steps leaves behind.
 */
export async function reconcile(opts: {
  store: Store;
  host: HostDeps;
  log: Logger;
  adopt: (record: SandboxRecord) => Promise<void>;
  adoptPaused: (record: SandboxRecord) => Promise<void>;
}): Promise<ReconcileReport> {
  const { store, host, log } = opts;
  const report: ReconcileReport = { adopted: [], removed: [], orphans: [] };
  const records = store.listSandboxes();

  for (const record of records) {
    if (record.state === 'paused') {
      try {
        await opts.adoptPaused(record);
        report.adopted.push(record.id);
        continue;
      } catch (err) {
        log.warn({ err, sandbox: record.id }, 'could not keep a paused sandbox; removing it');
      }
    }
    const status = record.state === 'running' ? await host.runtime.status(record.id) : 'missing';
    if (status === 'running') {
      try {
        await applyNetwork(host, record);
        await opts.adopt(record);
        report.adopted.push(record.id);
        continue;
      } catch (err) {
        log.warn({ err, sandbox: record.id }, 'could not adopt a running sandbox; removing it');
      }
    }
    await teardown(host, record.id, record.slot);
    store.deleteSandbox(record.id);
    report.removed.push(record.id);
  }

  const known = new Set(records.map((r) => r.id));
  const found = new Set<string>([
    ...(await host.runtime.list()),
    ...(await host.network.owners()).map((o) => o.id),
    ...(await readdir(host.sandboxesDir).catch(() => [] as string[])),
  ]);
  for (const id of found) {
    if (known.has(id)) continue;
    await teardown(host, id);
    report.orphans.push(id);
  }
  // egress chains of slots no sandbox holds any more (a crash between a kill's steps)
  await host.network.prunePolicies(store.listSandboxes().map((r) => r.slot));
  if (report.adopted.length + report.removed.length + report.orphans.length > 0) {
    log.info(report, 'reconciled sandboxes with the host');
  }
  return report;
}
