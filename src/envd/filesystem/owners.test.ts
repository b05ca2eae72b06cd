import { describe, expect, it } from 'vitest';
import type { AgentClient, FileInfo } from '../../agent-channel/client.ts';
import { CoveError } from '../../core/errors.ts';
import { createOwnerCache, parseIds } from './owners.ts';

function fakeAgent(files: Record<string, string>, reads: string[]): AgentClient {
  return {
    stat: (path: string) =>
      files[path] === undefined
        ? Promise.reject(new CoveError('not_found', path))
        : Promise.resolve({ size: files[path].length, mtimeMs: files[path].length } as FileInfo),
    async *readFile(path: string) {
      reads.push(path);
      if (files[path] === undefined) throw new CoveError('not_found', path);
      yield await Promise.resolve(Buffer.from(files[path]));
    },
  } as unknown as AgentClient;
}

describe('owner names', () => {
  it('parses passwd and group defensively; the first id wins', () => {
    const m = parseIds(
      'root:x:0:0::/root:/bin/sh\nbad line\nuser:x:1000:1000::/home/user:/bin/bash\ndup:x:0:0\n:x:5:\nn:x:-1:\n',
    );
    expect([...m]).toEqual([
      [0, 'root'],
      [1000, 'user'],
    ]);
  });

  it('reads the databases again only when they change, and falls back to numbers', async () => {
    const files: Record<string, string> = {
      '/etc/passwd': 'root:x:0:0::/root:/bin/sh\n',
      '/etc/group': 'root:x:0:\n',
    };
    const reads: string[] = [];
    const agent = fakeAgent(files, reads);
    const cache = createOwnerCache();
    const a = await cache.names('s1', agent);
    expect([a.user(0), a.group(0), a.user(1000)]).toEqual(['root', 'root', '1000']);
    await cache.names('s1', agent);
    expect(reads).toHaveLength(2);
    files['/etc/passwd'] += 'user:x:1000:1000::/home/user:/bin/bash\n';
    expect((await cache.names('s1', agent)).user(1000)).toBe('user');
    expect(reads).toHaveLength(4);
    delete files['/etc/group'];
    expect((await cache.names('s1', agent)).group(0)).toBe('0');
    cache.forget('s1');
  });
});
