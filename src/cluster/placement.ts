import type { NodeRecord } from './store.ts';

export interface PlacementView {
  now: number;
  /** A node silent for longer is not placed on (its heartbeat is stale). */
  staleMs: number;
  /** Creates this replica has in flight per node (heartbeats lag behind them). */
  inflight: ReadonlyMap<string, number>;
  /** Nodes this replica could not reach lately, until the given time. */
  suspect: ReadonlyMap<string, number>;
}

/**
 * The nodes a create may go to, best first: only nodes up (not draining, not lost), heard
 * from within `staleMs`, with room left after this replica's creates in flight; first those
 * that have the template built, then the most free slots, ties broken at random so that
 * replicas do not all pick the same node.
 */
export function rankNodes(nodes: readonly NodeRecord[], template: string, view: PlacementView): NodeRecord[] {
  const room = (n: NodeRecord) => n.free - (view.inflight.get(n.name) ?? 0);
  return nodes
    .filter(
      (n) =>
        n.state === 'up' &&
        n.lastSeen >= view.now - view.staleMs &&
        (view.suspect.get(n.name) ?? 0) <= view.now &&
        room(n) > 0,
    )
    .map((n) => ({ n, has: n.templates.includes(template) ? 1 : 0, room: room(n), tie: Math.random() }))
    .sort((a, b) => b.has - a.has || b.room - a.room || a.tie - b.tie)
    .map((x) => x.n);
}
