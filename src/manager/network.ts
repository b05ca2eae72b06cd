import { CoveError } from '../core/errors.ts';
import { newToken } from '../core/ids.ts';
import { OPEN_NETWORK, type SandboxNetwork } from '../network/egress-policy.ts';
import type { SandboxRecord, Store } from '../store/store.ts';
import type { HostDeps } from './host.ts';
import type { CreateSandboxInput, SandboxInfo } from './types.ts';

/** The record's network fields for a create: a traffic token when public traffic is off. */
export function networkFields(input?: CreateSandboxInput) {
  if (!input?.network) return {};
  return {
    network: input.network,
    ...(!input.network.allowPublicTraffic && { trafficAccessToken: newToken() }),
  };
}

/**
 * Makes the kernel enforce the record's egress policy. At create it runs before the sandbox
 * is handed out, so nothing of the user's runs before its policy holds; a failure there runs
 * `undo` (the kill) and throws. At adopt it runs again although the rules outlived the
 * restart (network.init keeps them): the egress proxy's ports changed, and its table of
 * policies starts empty.
 */
export async function applyNetwork(host: HostDeps, record: SandboxRecord, undo?: () => Promise<void>) {
  const slot = host.network.slot(record.slot, record.id);
  await host.network.applyPolicy(slot, record.network ?? OPEN_NETWORK).catch(async (err: unknown) => {
    if (!undo) throw err;
    await undo().catch(() => {});
    throw new CoveError('internal', `applying the sandbox's network policy failed: ${String(err)}`, {
      cause: err,
    });
  });
}

/** The manager's network methods, over its live records. */
export function networkMethods(deps: {
  host: HostDeps;
  store: Store;
  record: (id: string) => SandboxRecord;
  info: (record: SandboxRecord) => SandboxInfo;
}) {
  // One update at a time per sandbox: two interleaved ones could leave the kernel with one
  // policy and the record with the other.
  const queues = new Map<string, Promise<unknown>>();
  return {
    /**
     * E2B's updateNetwork (spec 2.11): replaces the egress settings (allowOut, denyOut,
     * internet access, header rules), keeps the ingress ones (public traffic, host mask, https ports). The
     * rules change first, then the record: a failure changes nothing a restart would undo.
     */
    updateNetwork(
      id: string,
      egress: Pick<
        SandboxNetwork,
        'allowOut' | 'denyOut' | 'allowInternetAccess' | 'rules' | 'secretsOwner' | 'egressProxy'
      >,
    ): Promise<SandboxInfo> {
      deps.record(id); // not found: fail now, not behind another update
      const update = async () => {
        const record = deps.record(id);
        const network: SandboxNetwork = { ...(record.network ?? OPEN_NETWORK), ...egress };
        // Replaced, so cleared when omitted (and no `undefined` kept in the stored JSON).
        if (!egress.rules) delete network.rules;
        if (!egress.secretsOwner) delete network.secretsOwner;
        if (!egress.egressProxy) delete network.egressProxy;
        await deps.host.network.applyPolicy(deps.host.network.slot(record.slot, id), network);
        deps.store.updateSandbox(id, { network });
        record.network = network;
        return deps.info(record);
      };
      const done = (queues.get(id) ?? Promise.resolve()).then(update, update);
      const tail = done.catch(() => {});
      queues.set(id, tail);
      void tail.then(() => queues.get(id) === tail && queues.delete(id));
      return done;
    },
  };
}
