import { join } from 'node:path';
import type { Config } from '../../config/config.ts';
import { CoveError } from '../../core/errors.ts';
import type { Logger } from '../../core/log.ts';
import type { Manager } from '../../manager/manager.ts';
import type { DatabaseAccess } from './access.ts';
import { createDatabases, type Databases } from './databases.ts';
import { loadSecret } from '../tokens.ts';
import { createForwarder } from './proxy.ts';

/** Agents' databases as the server's config sets them up: on the sandboxes' bridge address. */
export function databasesOf(config: Config, log: Logger): Databases {
  return createDatabases({
    home: config.home,
    address: `${config.subnet16}.0.1`,
    subnet: `${config.subnet16}.0.0/16`,
    port: config.databases.port,
    ...(config.databases.externalUrl && { externalUrl: config.databases.externalUrl }),
    maxSizeMB: config.databases.maxSizeMB,
    checkMs: config.databases.checkMs,
    secret: loadSecret(join(config.home, 'services.secret')),
    log,
  });
}

/** The create option: the metadata key naming the database (by name or id) a sandbox gets. */
export const DATABASE_METADATA = 'cove-database';

/**
 * Gives sandboxes their database by decorating the manager at wiring time (main.ts), as the
 * audit does, so every front end (API, SDK, MCP) is covered and the manager knows nothing of
 * databases. A create whose metadata names `cove-database` is checked first (the database
 * must be the calling key's: else not found, nothing built), gets `DATABASE_URL` (under the
 * creator's own variables), and its address enters the server's firewall set before the
 * create returns; a failure there kills the sandbox. A kill removes the address.
 * Forks reach the same database as their source (they carry its DATABASE_URL, and their
 * processes may already hold connections' settings: a copy would need another role and URL).
 * A snapshot remembers its source's database; a sandbox created from it gets that database
 * when the creating key owns it (else it is created without one), unless it names another.
 */
export function wireDatabases(manager: Manager, dbs: Databases, access: DatabaseAccess, log: Logger): void {
  const create = manager.create.bind(manager);
  manager.create = async (input) => {
    const named = input.metadata?.[DATABASE_METADATA];
    const fromSnapshot = named === undefined ? access.snapshotDatabase(input.template) : undefined;
    if (named === undefined && (!fromSnapshot || !input.owner)) return create(input);
    if (!input.owner) throw new CoveError('permission_denied', 'a database needs an API key');
    let db;
    try {
      db = dbs.get(input.owner, named ?? fromSnapshot!);
    } catch (err) {
      if (named !== undefined) throw err;
      log.info({ template: input.template }, "the snapshot's database is not the creating key's: none given");
      return create(input);
    }
    const info = await create({ ...input, envVars: { DATABASE_URL: dbs.url(db), ...input.envVars } });
    await grantOrKill(info.id, db.id, info.address);
    return info;
  };

  const fork = manager.fork.bind(manager);
  manager.fork = async (id, input) => {
    const databaseId = access.databaseOf(id);
    const results = await fork(id, input);
    if (!databaseId || !dbs.exists(databaseId)) return results;
    return Promise.all(
      results.map(async (r) => {
        if (!('sandbox' in r)) return r;
        try {
          await grantOrKill(r.sandbox.id, databaseId, r.sandbox.address);
          return r;
        } catch (err) {
          return { error: err as CoveError };
        }
      }),
    );
  };

  const snapshot = manager.createSnapshot.bind(manager);
  manager.createSnapshot = async (id, opts) => {
    const made = await snapshot(id, opts);
    const databaseId = access.databaseOf(id);
    if (databaseId) access.rememberSnapshot(made.id, made.name, databaseId);
    return made;
  };
  const deleteSnapshot = manager.deleteSnapshot.bind(manager);
  manager.deleteSnapshot = async (idOrName) => {
    await deleteSnapshot(idOrName);
    access.forgetSnapshot(idOrName);
  };

  async function grantOrKill(sandboxId: string, databaseId: string, address: string): Promise<void> {
    try {
      await access.grant(sandboxId, databaseId, address);
    } catch (err) {
      await manager.kill(sandboxId).catch(() => {});
      throw new CoveError('internal', `giving the sandbox its database failed: ${String(err)}`, {
        cause: err,
      });
    }
  }

  manager.events.on('killed', (id) => {
    access
      .revoke(id)
      .catch((err: unknown) => log.error({ err, sandbox: id }, 'removing database access failed'));
  });
}

/**
 * At start, after the manager's reconcile: the server up when databases exist, the grants of
 * live sandboxes only, size checks, and with an operator's server the forwarder on the bridge
 * address (proxy.ts). Returns what stops them.
 */
export async function startDatabases(
  manager: Manager,
  dbs: Databases,
  access: DatabaseAccess,
  listen: { address: string; port: number; log: Logger },
): Promise<() => Promise<void>> {
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
  if (!dbs.server.external) return async () => {};
  const forwarder = createForwarder(
    dbs.server,
    (address) => {
      const id = access.databaseAt(address);
      return id && dbs.role(id);
    },
    listen.log,
  );
  await forwarder.listen(listen.address, listen.port);
  return () => forwarder.close();
}
