import { join } from 'node:path';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import type { TemplateStore } from '../templates/store.ts';
import type { Audit } from './index.ts';
import { recordLifecycle } from './lifecycle.ts';
import { recordManagerActions } from './manager-actions.ts';
import { runtimeLogTail } from './runtime-log.ts';
import type { SandboxLog } from './sandbox-log.ts';
import { copyStartLog } from './start-log.ts';

/** What follows a sandbox's creation and its end, besides the audit trail's own records. */
export interface SandboxFollowers {
  manager: Manager;
  audit: Audit;
  log: Logger;
  templates: Pick<TemplateStore, 'get'>;
  sandboxLog: SandboxLog;
  sandboxesDir: string;
  created(c: { template: string; pooled: boolean; ms: number; backend: string }): void;
  /** Everything else that keeps per-sandbox state (metrics, services) lets go of it. */
  killed(id: string, reason: string): void;
}

/**
 * Wires the manager's `created` and `killed` events to the audit trail, the startup log and
 * the sandbox's own log (E2B's logs endpoints, `cove sandbox logs`), and to the callers'.
 */
export function followSandboxes(f: SandboxFollowers): void {
  const { manager, log, sandboxLog } = f;
  recordLifecycle(manager.events, f.audit);
  recordManagerActions(manager, f.audit);
  manager.events.on('created', ({ id, template, pooled, ms }) => {
    const backend = manager.get(id).runtime;
    log.info({ sandbox: id, template, pooled, backend, ms }, 'sandbox created');
    // The start command's output goes into the sandbox's log.
    void f.templates
      .get(template)
      .then((t) => t.start && copyStartLog(manager.agent(id), id, t.start.log, sandboxLog))
      .catch((err: unknown) => log.debug({ err, sandbox: id }, 'start command log not copied'));
    f.created({ template, pooled, ms, backend });
  });
  manager.events.on('killed', (id, reason) => {
    sandboxLog.append(id, 'info', 'sandbox stopped');
    for (const line of runtimeLogTail(join(f.sandboxesDir, id, 'runtime.log')))
      sandboxLog.append(id, 'warn', line, { source: 'runtime' });
    sandboxLog.stopped(id);
    f.killed(id, reason);
  });
}
