import { describe, expect, it } from 'vitest';
import { rankNodes, type PlacementView } from './placement.ts';
import type { NodeRecord } from './store.ts';

const node = (name: string, over: Partial<NodeRecord> = {}): NodeRecord => ({
  name,
  url: `http://${name}`,
  state: 'up',
  slots: 10,
  free: 5,
  templates: ['base'],
  lastSeen: 1_000,
  registeredAt: 0,
  ...over,
});
const view = (over: Partial<PlacementView> = {}): PlacementView => ({
  now: 1_000,
  staleMs: 5_000,
  inflight: new Map(),
  suspect: new Map(),
  ...over,
});

describe('placement', () => {
  it('skips draining, lost, stale, full and suspect nodes', () => {
    const nodes = [
      node('draining', { state: 'draining' }),
      node('lost', { state: 'lost' }),
      node('stale', { lastSeen: 10_000 - 5_001 }),
      node('full', { free: 0 }),
      node('busy', { free: 2 }),
      node('suspect'),
      node('ok', { lastSeen: 10_000 - 5_000 }),
    ];
    const v = view({
      now: 10_000,
      inflight: new Map([['busy', 2]]),
      suspect: new Map([['suspect', 20_000]]),
    });
    expect(rankNodes(nodes, 'base', v).map((n) => n.name)).toEqual(['ok']);
  });

  it('prefers nodes with the template, then the most room after creates in flight', () => {
    const nodes = [node('a', { free: 9, templates: [] }), node('b', { free: 3 }), node('c', { free: 4 })];
    const v = view({ inflight: new Map([['c', 2]]) });
    expect(rankNodes(nodes, 'base', v).map((n) => n.name)).toEqual(['b', 'c', 'a']);
  });
});
