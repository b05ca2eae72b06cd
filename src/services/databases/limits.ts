import type { DatabaseSync } from 'node:sqlite';
import type { Logger } from '../../core/log.ts';
import { escapedSql, freezeSql, lockSql, sizes, thawSql } from './quota.ts';
import type { PgServer } from './server.ts';

export interface QuotaOptions {
  server: PgServer;
  records: DatabaseSync;
  log: Logger;
  /** The server's name of a database id. */
  name: (id: string) => string;
  ready: () => Promise<void>;
  superuser: () => boolean;
}

/**
 * The size check (quota.ts says how a database is frozen and thawed): every `checkMs`, each
 * database's size against its `max_bytes`; past it, frozen (`frozen = 1` in databases.db,
 * after the server's change: a crash between the two is repeated harmlessly, as both SQL
 * scripts are idempotent); frozen and back under it after a VACUUM, thawed; frozen and grown by
 * a tenth of its limit since (what no privilege stops), locked (`frozen = 2`) until thawed.
 */
export function createQuotas(opts: QuotaOptions) {
  const { server, records, log } = opts;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  async function sizesOf(ids: string[]): Promise<Map<string, number>> {
    const byName = await sizes(server, ids.map(opts.name));
    return new Map(
      ids.flatMap((id) => (byName.has(opts.name(id)) ? [[id, byName.get(opts.name(id))!]] : [])),
    );
  }

  async function check(): Promise<void> {
    const rows = records.prepare('SELECT id, max_bytes, frozen, frozen_bytes FROM databases').all();
    if (rows.length === 0) return;
    await opts.ready();
    const now = await sizesOf(rows.map((r) => String(r.id)));
    for (const r of rows) {
      const id = String(r.id);
      const n = opts.name(id);
      const max = Number(r.max_bytes);
      let size = now.get(id);
      if (size === undefined || !max) continue; // deleted meanwhile, or a record from before limits
      const state = Number(r.frozen);
      if (state === 0) {
        if (size <= max) continue;
        await server.sql(freezeSql(n, max, opts.superuser()), n);
        records.prepare('UPDATE databases SET frozen = 1, frozen_bytes = ? WHERE id = ?').run(size, id);
        log.warn({ database: id, bytes: size, max }, 'database over its size limit: frozen');
        continue;
      }
      // VACUUM gives back the space of deleted rows at a table's end (TRUNCATE gives all of it).
      await server.sql('VACUUM', n);
      size = (await sizesOf([id])).get(id) ?? size;
      if (size > max) {
        // A transaction open at the freeze may have made objects since: freeze those too.
        if ((await server.sql(escapedSql(n), n)) !== '0') {
          await server.sql(freezeSql(n, max, opts.superuser()), n);
          records.prepare('UPDATE databases SET frozen_bytes = ? WHERE id = ?').run(size, id);
          log.info(
            { database: id, bytes: size },
            'frozen again: objects made by a transaction open at the freeze',
          );
        } else if (state === 1 && size > Number(r.frozen_bytes ?? size) + max / 10) {
          await server.sql(lockSql(n));
          records.prepare('UPDATE databases SET frozen = 2 WHERE id = ?').run(id);
          log.warn({ database: id, bytes: size, max }, 'database still growing while frozen: locked');
        }
        continue;
      }
      await server.sql(thawSql(n), n);
      records.prepare('UPDATE databases SET frozen = 0, frozen_bytes = NULL WHERE id = ?').run(id);
      log.info({ database: id, bytes: size, max }, 'database under its size limit again: thawed');
    }
  }

  /** One check at a time; a failure is logged and the next check tries again. */
  function checkNow(): Promise<void> {
    running ??= check()
      .catch((err: unknown) => log.error({ err }, 'database size check failed'))
      .finally(() => (running = undefined));
    return running;
  }

  return {
    sizes: sizesOf,
    checkNow,
    every(ms: number): void {
      if (timer || ms === 0) return;
      timer = setInterval(() => void checkNow(), ms);
      timer.unref();
    },
    stop(): void {
      clearInterval(timer);
      timer = undefined;
    },
  };
}
