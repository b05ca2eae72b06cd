import { DatabaseSync } from 'node:sqlite';

/**
 * The services' own SQLite file (`<home>/services.db`), apart from the sandbox store: usage
 * and memory grow with traffic, and keeping them out of cove.db keeps its writes short.
 * WAL, so that recall reads never wait for a write.
 */
export function openServicesDb(path: string): DatabaseSync {
  const db = new DatabaseSync(path);
  db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;');
  return db;
}
