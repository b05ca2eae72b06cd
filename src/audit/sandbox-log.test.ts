import { describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runtimeLogTail } from './runtime-log.ts';
import { createSandboxLog } from './sandbox-log.ts';

describe('sandbox log', () => {
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

describe('runtime log tail', () => {
  it('reads the last lines, drops a cut first line, and copes with no file', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'cove-runtime-log-')), 'runtime.log');
    expect(runtimeLogTail(file)).toEqual([]);
    writeFileSync(file, 'first line\n\nsecond\r\nthird');
    expect(runtimeLogTail(file)).toEqual(['first line', 'second', 'third']);
    expect(runtimeLogTail(file, 13)).toEqual(['second', 'third']);
    expect(runtimeLogTail(file, 12)).toEqual(['third']);
  });
});
