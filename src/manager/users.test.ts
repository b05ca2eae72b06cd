import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { resolveUser } from './users.ts';

const passwd = 'root:x:0:0:root:/root:/bin/bash\nuser:x:1000:1000::/home/user:/bin/bash\nbroken:x:abc\n';
const group = 'root:x:0:\nsudo:x:27:user\nuser:x:1000:\n';

describe('resolveUser', () => {
  it('finds a user with its supplementary groups', () => {
    expect(resolveUser('user', passwd, group)).toEqual({
      name: 'user',
      uid: 1000,
      gid: 1000,
      groups: [1000, 27],
      home: '/home/user',
      shell: '/bin/bash',
    });
  });

  it('accepts a numeric uid, known or not', () => {
    expect(resolveUser('0', passwd, group).name).toBe('root');
    expect(resolveUser('4242', passwd, group)).toMatchObject({ uid: 4242, gid: 4242, home: '/' });
  });

  it('rejects an unknown name and skips malformed lines', () => {
    expect(() => resolveUser('broken', passwd, group)).toThrow(/does not exist/);
    try {
      resolveUser('nobody', passwd, group);
    } catch (err) {
      expect(isCoveError(err, 'invalid_argument')).toBe(true);
    }
  });
});
