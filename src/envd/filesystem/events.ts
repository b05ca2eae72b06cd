import { create } from '@bufbuild/protobuf';
import { posix } from 'node:path';
import type { WatchEvent } from '../../agent-channel/client.ts';
import {
  EventType,
  type FilesystemEvent,
  FilesystemEventSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import type { FsCall } from './rpc.ts';

const TYPES = {
  create: EventType.CREATE,
  write: EventType.WRITE,
  remove: EventType.REMOVE,
  rename: EventType.RENAME,
  chmod: EventType.CHMOD,
} as const satisfies Record<WatchEvent['type'], EventType>;

/**
 * One agent event as envd's FilesystemEvent, named relative to the watched directory. The
 * agent already splits an inotify event with several bits into several, in fsnotify's order
 * (CREATE, RENAME, CHMOD, WRITE, REMOVE). With includeEntry only CREATE, WRITE and CHMOD carry
 * an entry, and only when the stat succeeds: after REMOVE or RENAME the name may already belong
 * to something else (envd's opCarriesEntry).
 */
export async function toFilesystemEvent(
  call: FsCall,
  root: string,
  event: WatchEvent,
  includeEntry: boolean,
): Promise<FilesystemEvent> {
  const out = create(FilesystemEventSchema, { name: event.path, type: TYPES[event.type] });
  if (includeEntry && (event.type === 'create' || event.type === 'write' || event.type === 'chmod')) {
    const info = await call.agent.stat(posix.join(root, event.path), call.as).catch(() => undefined);
    if (info) out.entry = await call.entry(info);
  }
  return out;
}
