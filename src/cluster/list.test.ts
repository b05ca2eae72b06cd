import { describe, expect, it } from 'vitest';
import { listPage, parseListQuery } from '../api/list.ts';
import type { SandboxInfo } from '../manager/manager.ts';
import { mergePages } from './list.ts';

// Three nodes, each paging its own sandboxes as a node does (src/api/list.ts), merged by the
// replica: every placed sandbox comes exactly once, in the list's order, whatever the limit.
// Start times repeat (ties broken by id); some sandboxes a node runs are unplaced (a create in
// flight) or placed on another node (its claim counts for nothing): never listed.
const sandbox = (id: string, at: number) =>
  ({
    id,
    startedAt: new Date(at),
    state: 'running',
    templateName: 'base',
    metadata: {},
  }) as unknown as SandboxInfo;

function cluster(seed: number) {
  let x = seed;
  const rand = (n: number) => ((x = (x * 1103515245 + 12345) % 2 ** 31), x % n);
  const nodes = ['n0', 'n1', 'n2'].map((name) => ({ name, sandboxes: [] as SandboxInfo[] }));
  const placed = new Map<string, string>();
  for (let i = 0; i < 23; i++) {
    const node = nodes[rand(3)]!;
    const id = `sbx${String(rand(1000)).padStart(3, '0')}${i}`;
    node.sandboxes.push(sandbox(id, 1_700_000_000_000 + rand(6) * 1000));
    const fate = rand(10);
    placed.set(id, fate === 0 ? 'n9' : node.name); // placed elsewhere
    if (fate === 1) placed.delete(id); // not placed yet
  }
  return { nodes, placed };
}

describe('cluster list paging (mergePages)', () => {
  for (const seed of [1, 7, 42])
    for (const order of ['desc', 'asc'] as const)
      it(`seed ${seed}, ${order}: every placed sandbox once, in order, for every limit`, () => {
        const { nodes, placed } = cluster(seed);
        const expected = nodes
          .flatMap((n) => n.sandboxes.filter((s) => placed.get(s.id) === n.name))
          .sort((a, b) => a.startedAt.getTime() - b.startedAt.getTime() || (a.id < b.id ? -1 : 1))
          .map((s) => s.id);
        if (order === 'desc') expected.reverse();
        expect(expected.length).toBeGreaterThan(10);
        for (const limit of [1, 2, 3, 5, 8, 100]) {
          const seen: string[] = [];
          let token: string | undefined;
          for (let pages = 0; pages < 100; pages++) {
            const q = { limit: String(limit), order, nextToken: token } as Record<string, string | undefined>;
            const merged = mergePages(
              nodes.map((n) => {
                const p = listPage(
                  n.sandboxes,
                  parseListQuery((name) => q[name]),
                );
                const items = p.items.map((s) => ({ sandboxID: s.id, startedAt: s.startedAt.toISOString() }));
                return { node: n.name, items, more: p.nextToken !== undefined };
              }),
              placed,
              { order, limit },
            );
            expect(merged.page.length).toBeLessThanOrEqual(limit);
            seen.push(...merged.page.map((s) => s.sandboxID));
            token = merged.nextToken;
            if (!token) break;
          }
          expect(seen, `limit ${limit}`).toEqual(expected);
        }
      });
});
