import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from '../src/config/config.ts';
import type { Manager } from '../src/manager/manager.ts';
import { createCluster } from '../src/services/databases/cluster.ts';
import { sh } from './helpers.ts';

/** What the e2b SDK's sandbox gives these helpers. */
interface SdkSandbox {
  sandboxId: string;
  files: { write(path: string, data: Blob): Promise<unknown> };
  commands: { run(cmd: string): Promise<unknown> };
}

/**
 * psql inside base sandboxes, which have no PostgreSQL client: the host's own psql and libpq
 * are copied in (Debian 12 both: every other library psql needs is in the template).
 */
export function sandboxPsql(manager: () => Manager) {
  const major = readdirSync('/usr/lib/postgresql')
    .filter((v) => /^\d+$/.test(v))
    .sort()
    .at(-1);
  const psqlBinary = readFileSync(`/usr/lib/postgresql/${major}/bin/psql`);
  const libpq = readFileSync('/usr/lib/x86_64-linux-gnu/libpq.so.5');
  return {
    async install<T extends SdkSandbox>(sbx: T): Promise<T> {
      await sbx.files.write('/tmp/pg/psql', new Blob([psqlBinary]));
      await sbx.files.write('/tmp/pg/libpq.so.5', new Blob([libpq]));
      await sbx.commands.run('chmod +x /tmp/pg/psql');
      return sbx;
    },
    /** psql in the sandbox; `url` defaults to its own DATABASE_URL. */
    run: (sbx: SdkSandbox, sql: string, url = '$DATABASE_URL') =>
      sh(
        manager(),
        sbx.sandboxId,
        `PGCONNECT_TIMEOUT=5 LD_LIBRARY_PATH=/tmp/pg /tmp/pg/psql "${url}" -X -q -At -v ON_ERROR_STOP=1 -c "${sql}"`,
      ),
  };
}

/** Stops the agents' PostgreSQL of a test's Cove: the server outlives Cove by design (as sandboxes do). */
export async function stopDatabaseServer(config: Pick<Config, 'home' | 'databases'>): Promise<void> {
  await createCluster({
    dir: join(config.home, 'postgres'),
    port: config.databases.port,
    listen: [],
    hba: [],
  }).stop();
}
