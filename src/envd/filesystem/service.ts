import { Filesystem } from '../../gen/filesystem/filesystem_pb.js';
import type { ServiceRegistration } from '../index.ts';
import { createWatcher } from './create-watcher.ts';
import { getWatcherEvents } from './get-watcher-events.ts';
import { listDir } from './list-dir.ts';
import { makeDir } from './make-dir.ts';
import { move } from './move.ts';
import { createOwnerCache } from './owners.ts';
import { remove } from './remove.ts';
import { removeWatcher } from './remove-watcher.ts';
import type { FsDeps } from './rpc.ts';
import { stat } from './stat.ts';
import { watchDir } from './watch-dir.ts';
import { createWatchers } from './watchers.ts';

/**
 * envd's `filesystem.Filesystem`, one file per RPC, served on the host through the sandbox's
 * agent. The per-sandbox state (owner names, polling watchers) goes when the sandbox does.
 */
export const filesystemService: ServiceRegistration = (router, deps) => {
  const fs: FsDeps = { ...deps, owners: createOwnerCache(), watchers: createWatchers() };
  deps.manager.events.on('killed', (id) => {
    fs.owners.forget(id);
    fs.watchers.forget(id);
  });
  router.service(Filesystem, {
    stat: stat(fs),
    makeDir: makeDir(fs),
    move: move(fs),
    listDir: listDir(fs),
    remove: remove(fs),
    watchDir: watchDir(fs),
    createWatcher: createWatcher(fs),
    getWatcherEvents: getWatcherEvents(fs),
    removeWatcher: removeWatcher(fs),
  });
};
