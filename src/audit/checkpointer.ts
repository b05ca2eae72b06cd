// A worker thread of the audit store (store.ts): it moves the WAL into the database file
// every second on a connection of its own, so that the checkpoint's fsyncs (often tens of ms
// on a busy disk) never block Cove's event loop. PASSIVE: it never waits for the writer.
import { DatabaseSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';

const { path, everyMs } = workerData as { path: string; everyMs: number };
// Opened at the first tick, not as the worker starts: a store closed (and its folder
// removed) before this thread ran gets its 'close' first, and nothing is opened again.
let db: DatabaseSync | undefined;
const timer = setInterval(() => {
  try {
    if (!db) {
      db = new DatabaseSync(path);
      db.exec('PRAGMA busy_timeout = 5000;');
    }
    db.exec('PRAGMA wal_checkpoint(PASSIVE)');
  } catch {
    // busy or closing: the next tick tries again, and close() checkpoints on the main thread
  }
}, everyMs);
parentPort?.on('message', () => {
  clearInterval(timer);
  db?.close();
  parentPort?.close();
});
