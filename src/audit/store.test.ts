import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runInRequest } from '../core/request-context.ts';
import { createAuditStore } from './store.ts';
import { scratchDir } from '../../test/scratch.ts';

const dir = () => scratchDir('cove-audit-');

describe('audit store', () => {
  it('records in order with the request’s key and id, and reads back after reopening', () => {
    const path = join(dir(), 'audit.db');
    const a = createAuditStore(path, { perSandbox: 100, retentionMs: 86_400_000 });
    runInRequest({ requestId: 'r1', keyId: 'k1' }, () => {
      a.record({ sandboxId: 's1', action: 'process.start', fields: { argv: ['ls', '-l'], uid: 0 } });
      a.record({ sandboxId: 's1', action: 'sandbox.kill', keyId: null, fields: { reason: 'timeout' } });
    });
    a.record({ sandboxId: 's2', action: 'file.write', outcome: 'not_found', fields: { path: '/x' } });
    a.close();
    const b = createAuditStore(path, { perSandbox: 100, retentionMs: 86_400_000 });
    const all = b.query({}).events;
    expect(all.map((e) => [e.sandboxId, e.action, e.outcome, e.keyId, e.requestId])).toEqual([
      ['s1', 'process.start', 'ok', 'k1', 'r1'],
      ['s1', 'sandbox.kill', 'ok', null, 'r1'],
      ['s2', 'file.write', 'not_found', null, null],
    ]);
    expect(all[0]!.fields).toEqual({ argv: ['ls', '-l'], uid: 0 });
    expect(all[0]!.seq).toBeLessThan(all[1]!.seq);
    expect(b.query({ keyId: 'k1' }).events).toHaveLength(1);
    expect(b.query({ sandboxId: 's1', action: 'process.' }).events).toHaveLength(1);
    expect(b.query({ action: '%' }).events).toHaveLength(0); // a prefix, not a pattern
    const page = b.query({ limit: 2 });
    expect(page.next).toBe(all[1]!.seq);
    expect(b.query({ after: page.next! }).events.map((e) => e.sandboxId)).toEqual(['s2']);
    b.close();
  });

  it('bounds each sandbox: a flood keeps the newest records and the lifecycle, and counts what it dropped', () => {
    const a = createAuditStore(join(dir(), 'audit.db'), { perSandbox: 100, retentionMs: 86_400_000 });
    a.record({ sandboxId: 's', action: 'sandbox.create' });
    for (let i = 0; i < 5000; i++) a.record({ sandboxId: 's', action: 'process.start', fields: { i } });
    a.record({ sandboxId: 'other', action: 'process.start' });
    const events = a.query({ sandboxId: 's' }).events;
    expect(events.length).toBeLessThanOrEqual(100);
    expect(events[0]!.action).toBe('sandbox.create');
    expect(events.at(-1)!.fields).toEqual({ i: 4999 });
    expect(a.dropped('s')).toBe(5001 - events.length);
    expect(a.query({ sandboxId: 'other' }).events).toHaveLength(1);
    a.close();
  });

  it('forgets what is older than the retention', () => {
    let clock = 1_000_000;
    const a = createAuditStore(join(dir(), 'audit.db'), {
      perSandbox: 100,
      retentionMs: 1000,
      now: () => clock,
    });
    a.record({ sandboxId: 's', action: 'sandbox.create' });
    clock += 500;
    a.record({ sandboxId: 's', action: 'sandbox.kill' });
    clock += 600;
    a.applyRetention();
    expect(a.query({}).events.map((e) => e.action)).toEqual(['sandbox.kill']);
    a.close();
  });

  it('selects by time, inclusive at both ends', () => {
    let clock = 1000;
    const a = createAuditStore(join(dir(), 'audit.db'), {
      perSandbox: 100,
      retentionMs: 86_400_000,
      now: () => clock,
    });
    for (let i = 0; i < 50; i++) {
      clock += i % 3 === 0 ? 0 : 10; // some records share a millisecond
      a.record({ sandboxId: `s${i % 4}`, action: 'process.start', fields: { i } });
    }
    const all = a.query({}).events;
    for (const [since, until] of [
      [1000, 1000],
      [1005, 1200],
      [1010, 1010],
      [0, 5000],
      [1330, 9999],
      [5000, 6000],
    ] as const) {
      const want = all.filter((e) => e.at >= since && e.at <= until).map((e) => e.seq);
      expect(a.query({ since, until }).events.map((e) => e.seq)).toEqual(want);
      const s1 = all.filter((e) => e.sandboxId === 's1' && e.at >= since).map((e) => e.seq);
      expect(a.query({ sandboxId: 's1', since }).events.map((e) => e.seq)).toEqual(s1);
    }
    a.close();
  });

  it('shows a key its own sandboxes and calls only, across a reopen', () => {
    const path = join(dir(), 'audit.db');
    const a = createAuditStore(path, { perSandbox: 10, retentionMs: 86_400_000 });
    runInRequest({ requestId: 'r1', keyId: 'k1' }, () =>
      a.record({ sandboxId: 'mine', action: 'sandbox.create' }),
    );
    runInRequest({ requestId: 'r2', keyId: 'k2' }, () =>
      a.record({ sandboxId: 'theirs', action: 'sandbox.create' }),
    );
    // Records with no key (envd's commands, a timeout) belong to the sandbox's owner.
    for (let i = 0; i < 30; i++) a.record({ sandboxId: 'mine', action: 'process.start', keyId: null });
    a.record({ sandboxId: 'mine', action: 'api', outcome: 'not_found', keyId: 'k2' }); // k2's own call
    a.record({ sandboxId: 'theirs', action: 'process.start', keyId: null });
    a.record({ sandboxId: null, action: 'api', keyId: 'k1' });
    a.close();
    const b = createAuditStore(path, { perSandbox: 10, retentionMs: 86_400_000 });
    const k1 = b.query({ visibleTo: 'k1' }).events;
    expect(new Set(k1.map((e) => e.sandboxId))).toEqual(new Set(['mine', null]));
    expect(k1.filter((e) => e.action === 'process.start').length).toBeGreaterThan(0);
    expect(b.query({ visibleTo: 'k1', sandboxId: 'theirs' }).events).toEqual([]);
    const k2 = b.query({ visibleTo: 'k2' }).events;
    expect(k2.map((e) => [e.sandboxId, e.action])).toEqual(
      expect.arrayContaining([
        ['theirs', 'sandbox.create'],
        ['theirs', 'process.start'],
      ]),
    );
    expect(k2.filter((e) => e.sandboxId === 'mine').map((e) => e.keyId)).toEqual(['k2']);
    expect(b.ownerOf('mine')).toBe('k1');
    expect(b.query({ visibleTo: 'k3' }).events).toEqual([]);
    b.record({ sandboxId: null, action: 'api', keyId: null, outcome: 'unauthenticated' }); // a refused key
    b.record({ sandboxId: 'nobodys', action: 'process.start', keyId: null });
    expect(b.query({ visibleTo: 'k3' }).events.map((e) => e.sandboxId)).toEqual([null, 'nobodys']);
    b.close();
  });
});
