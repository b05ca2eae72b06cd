import type { EventEmitter } from 'node:events';
import type { ManagerEvents } from '../manager/manager.ts';
import type { Audit } from './index.ts';

/**
 * Records the manager's lifecycle events. Both are emitted before the action is answered:
 * `created` once the sandbox runs, `killed` as soon as it stops being reachable. A timeout or
 * a death is nobody's action: its record names no key and no request, whatever request
 * happened to schedule the timer or open the agent's connection.
 */
export function recordLifecycle(events: EventEmitter<ManagerEvents>, audit: Audit): void {
  events.on('created', ({ id, template, pooled, input }) =>
    audit.record({
      sandboxId: id,
      action: 'sandbox.create',
      fields: {
        template,
        pooled,
        timeoutMs: input.timeoutMs,
        secure: input.secure ?? false,
        metadata: JSON.stringify(input.metadata ?? {}),
        envVars: Object.keys(input.envVars ?? {}), // names only: values may be secrets
        // never the upstream proxy's password (network.egressProxy)
        ...(input.network && {
          network: JSON.stringify(input.network, (k, v: unknown) => (k === 'password' ? undefined : v)),
        }),
      },
    }),
  );
  events.on('killed', (id, reason) =>
    audit.record({
      sandboxId: id,
      action: 'sandbox.kill',
      fields: { reason },
      ...(reason !== 'requested' && { keyId: null, requestId: null }),
    }),
  );
}
