import { create } from '@bufbuild/protobuf';
import { timestampFromMs } from '@bufbuild/protobuf/wkt';
import { posix } from 'node:path';
import type { FileInfo } from '../../agent-channel/client.ts';
import { type EntryInfo, EntryInfoSchema, FileType } from '../../gen/filesystem/filesystem_pb.js';
import type { OwnerNames } from './owners.ts';

const TYPES = {
  file: FileType.FILE,
  dir: FileType.DIRECTORY,
  symlink: FileType.SYMLINK,
  other: FileType.UNSPECIFIED,
};

/**
 * Go's `FileMode.String()` for an lstat result, which is what envd puts in `permissions`:
 * the type and special letters that apply ("dalTLDpSugct?"), or "-", then rwxrwxrwx.
 */
export function modeString(type: FileInfo['type'], mode: number): string {
  let head = '';
  if (type === 'dir') head += 'd';
  if (type === 'symlink') head += 'L';
  if (mode & 0o4000) head += 'u';
  if (mode & 0o2000) head += 'g';
  if (mode & 0o1000) head += 't';
  // The agent folds devices, pipes and sockets into "other": Go's letter for unknown kinds.
  if (type === 'other') head += '?';
  const rwx = 'rwxrwxrwx';
  let perms = '';
  for (let i = 0; i < 9; i++) perms += mode & (1 << (8 - i)) ? rwx[i] : '-';
  return (head || '-') + perms;
}

/**
 * The agent's stat as envd's EntryInfo. For a symlink, `type` and `mode` are its target's
 * (unspecified and 0 when it dangles) while `permissions`, owner, size and time are the link's
 * own, as Go's lstat-then-stat in envd gives them; `symlinkTarget` is absolute.
 */
export function toEntryInfo(info: FileInfo, names: OwnerNames): EntryInfo {
  const link = info.type === 'symlink';
  const type = link ? (info.targetType ?? 'other') : info.type;
  let symlinkTarget: string | undefined;
  if (link && info.symlinkTarget !== undefined) {
    // A dangling link comes back as its raw text: made absolute the way the kernel would read it.
    symlinkTarget = posix.resolve(posix.dirname(info.path), info.symlinkTarget);
  }
  return create(EntryInfoSchema, {
    name: info.name,
    type: TYPES[type],
    path: info.path,
    size: BigInt(info.size),
    // Go's FileMode.Perm(): the permission bits only.
    mode: (link ? (info.targetMode ?? 0) : info.mode) & 0o777,
    permissions: modeString(info.type, info.mode),
    owner: names.user(info.uid),
    group: names.group(info.gid),
    modifiedTime: timestampFromMs(info.mtimeMs),
    ...(symlinkTarget !== undefined && { symlinkTarget }),
    metadata: info.metadata ?? {},
  });
}
