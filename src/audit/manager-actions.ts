import { CoveError } from '../core/errors.ts';
import { currentRequest } from '../core/request-context.ts';
import type { Manager } from '../manager/manager.ts';
import type { Audit, AuditValue } from './index.ts';

/**
 * Records pauses, resumes, forks, snapshots and network policy changes in the audit trail
 * by decorating the manager's methods at wiring time (main.ts), so that every front end (the
 * API, MCP) is covered and the manager itself stays free of audit calls. Each record is made
 * once the action settled and before its caller hears of it, its outcome the error code when
 * it failed. A pause the manager makes itself (a timeout with `onTimeout: pause`) arrives as
 * its `paused` event, outside any request: recorded with no key.
 */
export function recordManagerActions(manager: Manager, audit: Audit): void {
  async function recorded<T>(
    sandboxId: string,
    action: string,
    fields: Record<string, AuditValue>,
    run: () => Promise<T>,
    more: (result: T) => Record<string, AuditValue> = () => ({}),
  ): Promise<T> {
    try {
      const result = await run();
      audit.record({ sandboxId, action, fields: { ...fields, ...more(result) } });
      return result;
    } catch (err) {
      audit.record({ sandboxId, action, outcome: err instanceof CoveError ? err.code : 'internal', fields });
      throw err;
    }
  }

  const pause = manager.pause.bind(manager);
  const resume = manager.resume.bind(manager);
  const wake = manager.wake.bind(manager);
  const fork = manager.fork.bind(manager);
  const createSnapshot = manager.createSnapshot.bind(manager);
  const updateNetwork = manager.updateNetwork.bind(manager);
  manager.pause = (id, opts) =>
    recorded(id, 'sandbox.pause', { memory: opts?.memory ?? true }, () => pause(id, opts));
  manager.resume = (id, opts) =>
    recorded(
      id,
      'sandbox.resume',
      { timeoutMs: opts.timeoutMs },
      () => resume(id, opts),
      (r) => ({ resumed: r.resumed }),
    );
  // Traffic for a paused sandbox with autoResume: a record only when it did resume.
  manager.wake = async (id) => {
    const woke = await wake(id);
    if (woke) audit.record({ sandboxId: id, action: 'sandbox.resume', fields: { trigger: 'traffic' } });
    return woke;
  };
  manager.fork = (id, input) =>
    recorded(
      id,
      'sandbox.fork',
      { count: input.count, timeoutMs: input.timeoutMs },
      () => fork(id, input),
      (r) => ({
        forks: r.map((f) => ('sandbox' in f ? f.sandbox.id : `error: ${f.error.code}`)),
      }),
    );
  manager.createSnapshot = (id, opts) =>
    recorded(
      id,
      'sandbox.snapshot',
      { name: opts?.name ?? null },
      () => createSnapshot(id, opts),
      (s) => ({
        snapshotId: s.id,
      }),
    );
  manager.updateNetwork = (id, egress) =>
    recorded(
      id,
      'network.policy',
      {
        allowOut: egress.allowOut ?? null,
        denyOut: egress.denyOut ?? null,
        allowInternetAccess: egress.allowInternetAccess ?? null,
      },
      () => updateNetwork(id, egress),
    );
  manager.events.on('paused', (id) => {
    if (!currentRequest())
      audit.record({ sandboxId: id, action: 'sandbox.pause', keyId: null, fields: { reason: 'timeout' } });
  });
}
