import { randomBytes } from 'node:crypto';
import type { Watch } from '../../agent-channel/client.ts';
import { CoveError } from '../../core/errors.ts';
import type { FilesystemEvent } from '../../gen/filesystem/filesystem_pb.js';
import { toFilesystemEvent } from './events.ts';
import type { FsCall } from './rpc.ts';

/** Events a watcher keeps for its next poll; one more and it fails rather than grow. */
export const MAX_BUFFERED_EVENTS = 10_000;
/** Polling watchers per sandbox (the agent serves 64 watches in all, streams included). */
export const MAX_WATCHERS = 32;

interface Watcher {
  watch: Watch;
  events: FilesystemEvent[];
  error?: CoveError;
}

/**
 * The polling form of WatchDir (CreateWatcher, GetWatcherEvents, RemoveWatcher; the Python
 * sync SDK's). A watcher belongs to its sandbox: another sandbox's id is not_found, and all of
 * a sandbox's watchers close when it goes (forget).
 */
export interface Watchers {
  create(call: FsCall, root: string, opts: { recursive: boolean; includeEntry: boolean }): Promise<string>;
  /** Takes the buffered events; a watcher that failed answers with its error instead. */
  take(sandbox: string, id: string): FilesystemEvent[];
  remove(sandbox: string, id: string): Promise<void>;
  forget(sandbox: string): void;
}

export function createWatchers(): Watchers {
  const bySandbox = new Map<string, Map<string, Watcher>>();

  function find(sandbox: string, id: string): Watcher {
    const w = bySandbox.get(sandbox)?.get(id);
    if (!w) throw new CoveError('not_found', `watcher with id ${id} not found`);
    return w;
  }

  async function pump(call: FsCall, root: string, w: Watcher, includeEntry: boolean): Promise<void> {
    try {
      for await (const event of w.watch.events) {
        // Awaited first: `w.events.push(await …)` would take the array before take() swaps it.
        const converted = await toFilesystemEvent(call, root, event, includeEntry);
        w.events.push(converted);
        if (w.events.length > MAX_BUFFERED_EVENTS) {
          throw new CoveError(
            'resource_exhausted',
            `more than ${MAX_BUFFERED_EVENTS} events were not polled`,
          );
        }
      }
    } catch (err) {
      w.error =
        err instanceof CoveError
          ? err
          : new CoveError('internal', `watcher failed: ${String(err)}`, { cause: err });
      w.events = [];
      await w.watch.close();
    }
  }

  return {
    async create(call, root, opts) {
      const mine = bySandbox.get(call.sandbox) ?? new Map<string, Watcher>();
      if (mine.size >= MAX_WATCHERS)
        throw new CoveError('resource_exhausted', `a sandbox has at most ${MAX_WATCHERS} watchers`);
      const watch = await call.agent.watch(root, { recursive: opts.recursive }, call.as);
      const id = `w${randomBytes(10).toString('hex')}`;
      const w: Watcher = { watch, events: [] };
      mine.set(id, w);
      bySandbox.set(call.sandbox, mine);
      void pump(call, root, w, opts.includeEntry);
      return id;
    },
    take(sandbox, id) {
      const w = find(sandbox, id);
      if (w.error) throw w.error;
      const events = w.events;
      w.events = [];
      return events;
    },
    async remove(sandbox, id) {
      const w = find(sandbox, id);
      bySandbox.get(sandbox)?.delete(id);
      if (bySandbox.get(sandbox)?.size === 0) bySandbox.delete(sandbox);
      await w.watch.close();
    },
    forget(sandbox) {
      for (const w of bySandbox.get(sandbox)?.values() ?? []) void w.watch.close();
      bySandbox.delete(sandbox);
    },
  };
}
