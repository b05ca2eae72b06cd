import { CoveError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Manager } from '../../manager/manager.ts';
import type { DatabaseAccess } from './access.ts';
import type { Databases } from './databases.ts';

/** The create option: the metadata key naming the database (by name or id) a sandbox gets. */
export const DATABASE_METADATA = 'cove-database';

/**
 * Gives sandboxes their database by decorating the manager's create at wiring time (main.ts),
 * as the audit does, so every front end (API, SDK, MCP) is covered and the manager knows
 * nothing of databases. A create whose metadata names `cove-database` is checked first (the
 * database must be the calling key's: else not found, nothing built), gets `DATABASE_URL`
 * (under the creator's own variables), and its address enters the server's firewall set
 * before the create returns; a failure there kills the sandbox. A kill removes the address.
 * Forks and sandboxes created from a snapshot get no grant (their copied URL does not connect).
 */
export function wireDatabases(manager: Manager, dbs: Databases, access: DatabaseAccess, log: Logger): void {
  const create = manager.create.bind(manager);
  manager.create = async (input) => {
    const ref = input.metadata?.[DATABASE_METADATA];
    if (ref === undefined) return create(input);
    if (!input.owner) throw new CoveError('permission_denied', 'a database needs an API key');
    const db = dbs.get(input.owner, ref);
    const info = await create({ ...input, envVars: { DATABASE_URL: dbs.url(db), ...input.envVars } });
    try {
      await access.grant(info.id, db.id, info.address);
    } catch (err) {
      await manager.kill(info.id).catch(() => {});
      throw new CoveError('internal', `giving the sandbox its database failed: ${String(err)}`, {
        cause: err,
      });
    }
    return info;
  };
  manager.events.on('killed', (id) => {
    access
      .revoke(id)
      .catch((err: unknown) => log.error({ err, sandbox: id }, 'removing database access failed'));
  });
}

/** At start, after the manager's reconcile: the server up when databases exist, the grants of live sandboxes only. */
export async function startDatabases(
  manager: Manager,
  dbs: Databases,
  access: DatabaseAccess,
): Promise<void> {
  await dbs.start();
  await access.sync(
    (id) => {
      try {
        return manager.get(id).address;
      } catch {
        return undefined; // gone (a paused sandbox is still found, and keeps its slot)
      }
    },
    (databaseId) => dbs.exists(databaseId),
  );
}
