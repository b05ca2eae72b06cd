import { describe, expect, it } from 'vitest';
import type { FileInfo } from '../../agent-channel/client.ts';
import { FileType } from '../../gen/filesystem/filesystem_pb.js';
import { modeString, toEntryInfo } from './entry.ts';

const names = {
  user: (u: number) => (u === 1000 ? 'user' : String(u)),
  group: (g: number) => (g === 1000 ? 'user' : String(g)),
};
const base: FileInfo = {
  name: 'f',
  path: '/home/user/f',
  type: 'file',
  size: 4,
  mode: 0o644,
  uid: 1000,
  gid: 1000,
  mtimeMs: 1_700_000_000_123,
};

describe('EntryInfo as envd builds it', () => {
  it("writes Go's FileMode.String()", () => {
    expect(modeString('file', 0o644)).toBe('-rw-r--r--');
    expect(modeString('dir', 0o755)).toBe('drwxr-xr-x');
    expect(modeString('symlink', 0o777)).toBe('Lrwxrwxrwx');
    expect(modeString('dir', 0o1777)).toBe('dtrwxrwxrwx');
    expect(modeString('file', 0o4755)).toBe('urwxr-xr-x');
    expect(modeString('other', 0o600)).toBe('?rw-------');
  });

  it('maps a file: names, permission bits only, time, metadata', () => {
    const e = toEntryInfo({ ...base, mode: 0o4755, metadata: { a: 'b' } }, names);
    expect(e).toMatchObject({ name: 'f', path: '/home/user/f', type: FileType.FILE, size: 4n, mode: 0o755 });
    expect(e).toMatchObject({
      permissions: 'urwxr-xr-x',
      owner: 'user',
      group: 'user',
      metadata: { a: 'b' },
    });
    expect(Number(e.modifiedTime!.seconds) * 1000 + e.modifiedTime!.nanos / 1e6).toBe(1_700_000_000_123);
    expect(e.symlinkTarget).toBeUndefined();
    expect(toEntryInfo({ ...base, uid: 42, gid: 7 }, names)).toMatchObject({ owner: '42', group: '7' });
  });

  it("gives a symlink its target's type and mode, and an absolute target", () => {
    const link: FileInfo = {
      ...base,
      name: 'l',
      path: '/home/user/l',
      type: 'symlink',
      mode: 0o777,
      size: 1,
    };
    const e = toEntryInfo({ ...link, targetType: 'dir', targetMode: 0o755, symlinkTarget: '/tmp/d' }, names);
    expect(e).toMatchObject({
      type: FileType.DIRECTORY,
      mode: 0o755,
      permissions: 'Lrwxrwxrwx',
      symlinkTarget: '/tmp/d',
    });
    const dangling = toEntryInfo({ ...link, symlinkTarget: '../gone' }, names);
    expect(dangling).toMatchObject({ type: FileType.UNSPECIFIED, mode: 0, symlinkTarget: '/home/gone' });
  });
});
