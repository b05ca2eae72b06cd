import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import type { SandboxInfo } from '../manager/manager.ts';
import { OPEN_NETWORK } from '../network/egress-policy.ts';
import { decodeMetadataFilter, listPage, parseListQuery } from './list.ts';

const sandbox = (id: string, startedAt: number, extra: Partial<SandboxInfo> = {}): SandboxInfo => ({
  id,
  templateName: 'base',
  runtime: 'crun',
  state: 'running',
  startedAt: new Date(startedAt),
  endAt: new Date(startedAt + 60_000),
  metadata: {},
  limits: { cpus: 1, memoryMiB: 512, pids: 100 },
  address: '10.0.0.2',
  network: OPEN_NETWORK,
  ...extra,
});

const query = (q: Record<string, string>) => parseListQuery((name) => q[name]);

function rejects(fn: () => unknown, message: RegExp): void {
  try {
    fn();
    expect.unreachable();
  } catch (err) {
    expect(isCoveError(err, 'invalid_argument')).toBe(true);
    expect((err as Error).message).toMatch(message);
  }
}

describe('list query', () => {
  it('decodes metadata as the SDK double-encodes it (spec 2.6)', () => {
    // What the SDK sends for {"a b":"c&d","k":"v","p":"1+1=2"}, after the query's own decoding.
    const pairs = Object.fromEntries(
      Object.entries({ 'a b': 'c&d', k: 'v', p: '1+1=2' }).map(([k, v]) => [
        encodeURIComponent(k),
        encodeURIComponent(v),
      ]),
    );
    const sent = new URLSearchParams(pairs).toString();
    const onTheWire = `metadata=${encodeURIComponent(sent)}`;
    const received = new URLSearchParams(onTheWire).get('metadata')!;
    expect(decodeMetadataFilter(received)).toEqual({ 'a b': 'c&d', k: 'v', p: '1+1=2' });
    expect(new URL('http://x/?metadata=a%252520b%3Dc%252526d%26k%3Dv').searchParams.get('metadata')).toBe(
      'a%2520b=c%2526d&k=v',
    );
    expect(decodeMetadataFilter('a%2520b=c%2526d&k=v')).toEqual({ 'a b': 'c&d', k: 'v' });
    rejects(() => decodeMetadataFilter('novalue'), /key=value/);
    rejects(() => decodeMetadataFilter('a=%E0%A4%A'), /percent-encoding/);
  });

  it('has E2B defaults and names each bad parameter', () => {
    const q = query({});
    expect(q).toMatchObject({ order: 'desc', limit: 100, metadata: {} });
    expect([...q.states]).toEqual(['running', 'paused']);
    rejects(() => query({ state: 'running,dead' }), /state/);
    rejects(() => query({ limit: '101' }), /limit/);
    rejects(() => query({ limit: '0' }), /limit/);
    rejects(() => query({ order: 'up' }), /order/);
    rejects(() => query({ startedAfter: 'yesterday' }), /startedAfter/);
    rejects(() => query({ template: 'base:latest' }), /tag/);
    for (const token of ['garbage!', Buffer.from('[1]').toString('base64url'), 'W10'])
      rejects(() => query({ nextToken: token }), /^Invalid next token$/);
  });
});

describe('list page', () => {
  const all = [
    sandbox('a', 1000, { metadata: { team: 'x' } }),
    sandbox('b', 2000, { metadata: { team: 'x' }, templateName: 'python' }),
    sandbox('c', 2000, { metadata: { team: 'y' } }),
    sandbox('d', 3000, { metadata: { team: 'x' }, state: 'paused' }),
  ];

  it('orders by start time (ids break ties), newest first by default', () => {
    expect(listPage(all, query({})).items.map((s) => s.id)).toEqual(['d', 'c', 'b', 'a']);
    expect(listPage(all, query({ order: 'asc' })).items.map((s) => s.id)).toEqual(['a', 'b', 'c', 'd']);
  });

  it('filters by metadata, state, template and start time', () => {
    const ids = (q: Record<string, string>) => listPage(all, query(q)).items.map((s) => s.id);
    expect(ids({ metadata: 'team=x' })).toEqual(['d', 'b', 'a']);
    expect(ids({ metadata: 'team=x', state: 'running' })).toEqual(['b', 'a']);
    expect(ids({ state: 'paused' })).toEqual(['d']);
    expect(ids({ template: 'python' })).toEqual(['b']);
    expect(ids({ template: 'unknown' })).toEqual([]);
    expect(ids({ startedAfter: new Date(2000).toISOString() })).toEqual(['d', 'c', 'b']);
    expect(listPage(all, query({ metadata: 'team=x' })).totalRunning).toBe(2);
  });

  it('pages with an opaque token until the last page, which has none', () => {
    for (const order of ['asc', 'desc']) {
      const seen: string[] = [];
      let token: string | undefined;
      let pages = 0;
      do {
        const page = listPage(all, query({ order, limit: '1', ...(token && { nextToken: token }) }));
        seen.push(...page.items.map((s) => s.id));
        token = page.nextToken;
        pages++;
      } while (token);
      expect(pages).toBe(4);
      expect(seen).toEqual(order === 'asc' ? ['a', 'b', 'c', 'd'] : ['d', 'c', 'b', 'a']);
    }
    // A sandbox that goes away between pages moves no other across the page boundary.
    const first = listPage(all, query({ limit: '2' }));
    const rest = listPage(
      all.filter((s) => s.id !== 'd'),
      query({ limit: '2', nextToken: first.nextToken! }),
    );
    expect(rest.items.map((s) => s.id)).toEqual(['b', 'a']);
    expect(rest.nextToken).toBeUndefined();
  });
});
