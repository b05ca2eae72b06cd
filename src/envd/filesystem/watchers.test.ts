import { describe, expect, it } from 'vitest';
import type { Watch, WatchEvent } from '../../agent-channel/client.ts';
import { Queue } from '../../agent-channel/files.ts';
import type { FsCall } from './rpc.ts';
import { MAX_BUFFERED_EVENTS, MAX_WATCHERS, createWatchers } from './watchers.ts';

/** A call whose agent hands out watches fed by the test. */
function fakeCall(sandbox: string) {
  const feeds: Queue<WatchEvent>[] = [];
  let closed = 0;
  const call = {
    sandbox,
    as: { uid: 1000, gid: 1000, elevated: true },
    agent: {
      watch: (): Promise<Watch> => {
        const q = new Queue<WatchEvent>();
        feeds.push(q);
        return Promise.resolve({
          events: { [Symbol.asyncIterator]: () => ({ next: () => q.next() }) },
          close: () => {
            closed++;
            q.end();
            return Promise.resolve();
          },
        });
      },
    },
  } as unknown as FsCall;
  return { call, feeds, closed: () => closed };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

describe('polling watchers', () => {
  it('buffers events until polled, per sandbox', async () => {
    const w = createWatchers();
    const { call, feeds } = fakeCall('s1');
    const id = await w.create(call, '/home/user', { recursive: false, includeEntry: false });
    feeds[0]!.push({ type: 'create', path: 'a' });
    feeds[0]!.push({ type: 'write', path: 'a' });
    await tick();
    expect(w.take('s1', id).map((e) => e.name)).toEqual(['a', 'a']);
    expect(w.take('s1', id)).toEqual([]);
    expect(() => w.take('s2', id)).toThrow(expect.objectContaining({ code: 'not_found' }));
    await w.remove('s1', id);
    expect(() => w.take('s1', id)).toThrow(expect.objectContaining({ code: 'not_found' }));
  });

  it('fails a watcher nobody polls instead of growing, and caps how many a sandbox has', async () => {
    const w = createWatchers();
    const { call, feeds } = fakeCall('s1');
    const id = await w.create(call, '/', { recursive: true, includeEntry: false });
    for (let i = 0; i <= MAX_BUFFERED_EVENTS; i++) feeds[0]!.push({ type: 'write', path: 'f' });
    for (let i = 0; i < 5; i++) await tick();
    expect(() => w.take('s1', id)).toThrow(expect.objectContaining({ code: 'resource_exhausted' }));
    for (let i = 1; i < MAX_WATCHERS; i++)
      await w.create(call, '/', { recursive: false, includeEntry: false });
    await expect(w.create(call, '/', { recursive: false, includeEntry: false })).rejects.toMatchObject({
      code: 'resource_exhausted',
    });
  });

  it('closes every watcher of a sandbox that goes', async () => {
    const w = createWatchers();
    const { call, closed } = fakeCall('s1');
    const a = await w.create(call, '/', { recursive: false, includeEntry: false });
    await w.create(call, '/', { recursive: false, includeEntry: false });
    w.forget('s1');
    expect(closed()).toBe(2);
    expect(() => w.take('s1', a)).toThrow(expect.objectContaining({ code: 'not_found' }));
  });
});
