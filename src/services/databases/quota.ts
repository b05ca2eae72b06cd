import type { PgServer } from './server.ts';

/**
 * A database's size limit. PostgreSQL has no quota of its own, so Cove checks sizes
 * (`pg_database_size`) every few seconds and freezes a database past its limit, in a way its
 * role cannot undo: ownership of the database and everything in it passes to a NOLOGIN holder
 * role (`dbq_<id>`), the role keeps SELECT, DELETE and TRUNCATE (to free space) and INSERT and
 * UPDATE, which a statement trigger of the admin's refuses with a clear message. No new
 * tables, schemas or temporary tables (no CREATE left). Cove VACUUMs a frozen database at each
 * check and thaws it (ownership back, triggers gone) once it is under the limit again.
 * Writes between two checks may pass the limit by what they wrote in that time.
 * SECURITY DEFINER routines become SECURITY INVOKER while frozen (they would run as the holder).
 */
export const holder = (n: string) => n.replace(/^db_/, 'dbq_');

export const QUOTA_MESSAGE = 'is over its size limit';

export function freezeSql(n: string, maxBytes: number, superuser: boolean): string {
  const q = holder(n);
  const mb = Math.round(maxBytes / 2 ** 20);
  return `
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${q}') THEN CREATE ROLE ${q} NOLOGIN; END IF;
END $$;
${superuser ? '' : `GRANT ${q} TO CURRENT_USER;`}
BEGIN;
REASSIGN OWNED BY ${n} TO ${q};
GRANT CONNECT ON DATABASE ${n} TO ${n};
CREATE SCHEMA IF NOT EXISTS cove_quota;
CREATE OR REPLACE FUNCTION cove_quota.refuse() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN
  RAISE EXCEPTION 'database % ${QUOTA_MESSAGE} (${mb} MB): delete or truncate data to write again', current_database()
    USING ERRCODE = '53100';
END $f$;
GRANT USAGE ON SCHEMA cove_quota TO ${n};
CREATE TABLE IF NOT EXISTS cove_quota.definers (fn regprocedure PRIMARY KEY);
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT DISTINCT relnamespace::regnamespace AS s FROM pg_class
    WHERE relowner = '${q}'::regrole AND relkind IN ('r', 'p', 'S', 'v', 'm', 'f') LOOP
    EXECUTE format('GRANT USAGE ON SCHEMA %s TO ${n}', r.s);
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA %s TO ${n}', r.s);
    EXECUTE format('GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %s TO ${n}', r.s);
  END LOOP;
  -- A SECURITY DEFINER routine now runs as the holder, which owns the tables: as its caller instead.
  FOR r IN SELECT oid::regprocedure AS f FROM pg_proc WHERE proowner = '${q}'::regrole AND prosecdef LOOP
    INSERT INTO cove_quota.definers VALUES (r.f) ON CONFLICT DO NOTHING;
    EXECUTE format('ALTER ROUTINE %s SECURITY INVOKER', r.f);
  END LOOP;
  FOR r IN SELECT oid::regclass AS t FROM pg_class
    WHERE relowner = '${q}'::regrole AND relkind IN ('r', 'p') AND NOT relispartition LOOP
    EXECUTE format('CREATE OR REPLACE TRIGGER cove_quota BEFORE INSERT OR UPDATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION cove_quota.refuse()', r.t);
  END LOOP;
END $$;
COMMIT;`;
}

export function thawSql(n: string): string {
  const q = holder(n);
  return `
BEGIN;
DO $$ DECLARE r record; BEGIN
  IF to_regclass('cove_quota.definers') IS NOT NULL THEN
    FOR r IN SELECT fn FROM cove_quota.definers LOOP
      EXECUTE format('ALTER ROUTINE %s SECURITY DEFINER', r.fn);
    END LOOP;
  END IF;
END $$;
DROP SCHEMA IF EXISTS cove_quota CASCADE;
REASSIGN OWNED BY ${q} TO ${n};
DROP OWNED BY ${q};
COMMIT;
ALTER ROLE ${n} LOGIN;
DROP ROLE IF EXISTS ${q};`;
}

/** How many tables, routines or schemas the role still owns (made by a transaction the freeze did not see). */
export function escapedSql(n: string): string {
  return `SELECT (SELECT count(*) FROM pg_class WHERE relowner = '${n}'::regrole)
    + (SELECT count(*) FROM pg_proc WHERE proowner = '${n}'::regrole)
    + (SELECT count(*) FROM pg_namespace WHERE nspowner = '${n}'::regrole)`;
}

/**
 * A frozen database that still grows (large objects: no privilege governs making them) is
 * locked: its role may not log in, its sessions end. Thawing (a higher limit, or less data)
 * lets it in again.
 */
export function lockSql(n: string): string {
  return `ALTER ROLE ${n} NOLOGIN;
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '${n}';`;
}

/** Each database's size in bytes, by server name. */
export async function sizes(server: PgServer, names: string[]): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  if (names.length === 0) return found;
  const rows = await server.sql(
    `SELECT datname, pg_database_size(datname) FROM pg_database WHERE datname IN (${names.map((n) => `'${n}'`).join(', ')})`,
  );
  for (const line of rows.split('\n').filter(Boolean)) {
    const [name, size] = line.split('|');
    found.set(String(name), Number(size));
  }
  return found;
}
