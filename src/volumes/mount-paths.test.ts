import { describe, expect, it } from 'vitest';
import {
  checkMountPath,
  forbiddenMountPaths,
  MAX_VOLUME_MOUNTS,
  resolveVolumeMounts,
} from './mount-paths.ts';

describe('volume mount paths', () => {
  it('normalises absolute paths', () => {
    expect(checkMountPath('/data')).toBe('/data');
    expect(checkMountPath('//mnt///data/')).toBe('/mnt/data');
    expect(checkMountPath('/home/user/my-vol_1.x')).toBe('/home/user/my-vol_1.x');
    expect(checkMountPath('/process')).toBe('/process'); // only /proc itself and below
  });

  it('refuses relative paths, dot segments, odd names and every forbidden path with a reason', () => {
    expect(() => checkMountPath('data')).toThrow(/not absolute/);
    expect(() => checkMountPath('/data/../etc')).toThrow(/may not contain "\.\."/);
    expect(() => checkMountPath('/./data')).toThrow(/may not contain "\."/);
    expect(() => checkMountPath('/da ta')).toThrow(/names/);
    expect(() => checkMountPath('/data\nx')).toThrow(/names/);
    for (const f of forbiddenMountPaths) {
      expect(() => checkMountPath(f.path)).toThrow(f.why);
      if (f.path !== '/') expect(() => checkMountPath(`${f.path}/sub/dir`)).toThrow(f.why);
    }
  });

  it('resolves names and refuses duplicates, nesting, too many and unknown volumes', () => {
    const lookup = (name: string) => {
      if (name === 'missing') throw new Error('no volume named missing');
      return `id-${name}`;
    };
    expect(
      resolveVolumeMounts(
        [
          { name: 'a', path: '/a/' },
          { name: 'a', path: '/b' },
        ],
        lookup,
      ),
    ).toEqual([
      { name: 'a', path: '/a', volumeId: 'id-a' },
      { name: 'a', path: '/b', volumeId: 'id-a' },
    ]);
    expect(() =>
      resolveVolumeMounts(
        [
          { name: 'a', path: '/a' },
          { name: 'b', path: '/a' },
        ],
        lookup,
      ),
    ).toThrow(/overlaps/);
    expect(() =>
      resolveVolumeMounts(
        [
          { name: 'a', path: '/a/b' },
          { name: 'b', path: '/a' },
        ],
        lookup,
      ),
    ).toThrow(/\/a\/b overlaps \/a/);
    expect(
      resolveVolumeMounts(
        [
          { name: 'a', path: '/ab' },
          { name: 'b', path: '/a' },
        ],
        lookup,
      ),
    ).toHaveLength(2);
    const many = Array.from({ length: MAX_VOLUME_MOUNTS + 1 }, (_, i) => ({ name: 'a', path: `/v${i}` }));
    expect(() => resolveVolumeMounts(many, lookup)).toThrow(/at most/);
    expect(() => resolveVolumeMounts([{ name: 'missing', path: '/m' }], lookup)).toThrow(/missing/);
  });
});
