import { describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runtimeLogTail } from './runtime-log.ts';
import { openSandboxLog } from './sandbox-log-sqlite.ts';
import { createSandboxLog } from './sandbox-log.ts';
import { scratchDir } from '../../test/scratch.ts';

type Opts = { perSandbox?: number; keepGone?: number; now?: () => number };
const dbPath = () => join(scratchDir('cove-sandbox-log-'), 'sandbox-logs.db');

// One suite, both implementations: in memory, and SQLite (what Cove runs).
describe.each([
  ['in memory', (o: Opts) => createSandboxLog(o)],
  ['in SQLite', (o: Opts) => openSandboxLog(dbPath(), o)],
])('sandbox log %s', (_, createSandboxLog) => {
  it('keeps the newest entries per sandbox, bounded in size', () => {
    let clock = 0;
    const log = createSandboxLog({ perSandbox: 3, now: () => ++clock });
    for (let i = 0; i < 5; i++) log.append('a', 'info', `line ${i}`, { key: 'k'.repeat(5000) });
    const entries = log.entries('a')!;
    expect(entries.map((e) => e.message)).toEqual(['line 2', 'line 3', 'line 4']);
    expect(entries[0]).toMatchObject({ timestamp: 3, level: 'info' });
    expect(entries[0]!.fields.key).toHaveLength(1024);
    log.append('a', 'error', 'x'.repeat(10_000));
    expect(log.entries('a')!.at(-1)!.message).toHaveLength(4096);
    expect(log.entries('b')).toBeUndefined();
  });

  it('forgets the oldest stopped sandboxes first, never running ones', () => {
    const log = createSandboxLog({ keepGone: 2 });
    for (const id of ['running', 'a', 'b', 'c']) log.append(id, 'info', 'created');
    log.stopped('a');
    log.stopped('b');
    log.stopped('b');
    log.stopped('never-logged');
    expect(log.entries('a')).toBeDefined();
    log.stopped('c');
    expect(log.entries('a')).toBeUndefined();
    expect(log.entries('b')).toBeDefined();
    expect(log.entries('running')).toBeDefined();
  });
});

describe('sandbox log in SQLite', () => {
  it('keeps the logs across a reopen, and counts sandboxes gone meanwhile against keepGone', () => {
    const path = dbPath();
    const a = openSandboxLog(path, { keepGone: 1 });
    for (const id of ['live', 'died', 'stopped']) a.append(id, 'info', `${id} created`, { k: 'v' });
    a.stopped('stopped');
    a.close();
    const b = openSandboxLog(path, { keepGone: 1 });
    expect(b.entries('live')).toMatchObject([{ level: 'info', message: 'live created', fields: { k: 'v' } }]);
    expect(b.entries('stopped')).toBeDefined();
    b.reconcile(['live']); // 'died' stopped while Cove was down: the newest gone one now
    expect(b.entries('stopped')).toBeUndefined();
    expect(b.entries('died')).toBeDefined();
    expect(b.entries('live')).toBeDefined();
    b.close();
  });
});

describe('runtime log tail', () => {
  it('reads the last lines, drops a cut first line, and copes with no file', () => {
    const file = join(scratchDir('cove-runtime-log-'), 'runtime.log');
    expect(runtimeLogTail(file)).toEqual([]);
    writeFileSync(file, 'first line\n\nsecond\r\nthird');
    expect(runtimeLogTail(file)).toEqual(['first line', 'second', 'third']);
    expect(runtimeLogTail(file, 13)).toEqual(['second', 'third']);
    expect(runtimeLogTail(file, 12)).toEqual(['third']);
  });
});
