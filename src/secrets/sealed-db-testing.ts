// Test support for the sealing tests (sealed-tokens, sealed-network): throwaway state
// databases and a look at their bytes on disk. Not imported by the server.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Fresh database paths under one prefix; `cleanup` removes every folder made so far. */
export function tempDatabases(prefix: string) {
  const dirs: string[] = [];
  return {
    dbPath: (): string => {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      dirs.push(dir);
      return join(dir, 'cove.db');
    },
    cleanup: (): void => {
      dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true }));
    },
  };
}

/** Whether the database or its WAL holds `text` anywhere, in free pages too. */
export const onDisk = (path: string, text: string): boolean =>
  [path, `${path}-wal`].some((f) => existsSync(f) && readFileSync(f).includes(text));
