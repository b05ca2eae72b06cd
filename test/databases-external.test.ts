import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, sh, startTestCove, stopTestCove, testConfig } from './helpers.ts';
import { startTestPostgres, type TestPostgres } from './postgres.ts';
import { sandboxPsql } from './sandbox-psql.ts';

const loadE2b = () => import('e2b');
type Sandbox = Awaited<ReturnType<Awaited<ReturnType<typeof loadE2b>>['Sandbox']['create']>>;

/**
 * Agents' databases on an operator's PostgreSQL (COVE_DATABASES_URL): a second real server
 * started by this test (unix socket only, every role by password), reached by sandboxes
 * through Cove's forwarder on the bridge address. Also what holds on either kind of server:
 * restore through the API, the size limit (exceeded for real), and forks and snapshots
 * reaching their source's database.
 */
describe.skipIf(!canRunSandboxes)('databases on an operator server', () => {
  let ext: TestPostgres;
  let cove: Cove & { config: Config; apiKey: string };
  let e2b: Awaited<ReturnType<typeof loadE2b>>;
  let mine: Sandbox;
  let appId: string;
  const adminPassword = randomBytes(12).toString('hex');
  const pg = sandboxPsql(() => cove.manager);
  const psql = pg.run;
  /**
   * Waits until the database is frozen with the table `big` the test's fill made. A check
   * during the fill freezes the database before the fill commits, so the table escapes that
   * freeze (its owner is still the database's role) and is frozen by the next check, which
   * also takes the size then as the frozen size (limits.ts).
   */
  const frozenWithBig = async () => {
    await vi.waitFor(
      async () =>
        expect(((await (await api('/databases/app')).json()) as { frozen: boolean }).frozen).toBe(true),
      { timeout: 60_000, interval: 500 },
    );
    const owned = "SELECT pg_get_userbyid(relowner) = current_user FROM pg_class WHERE relname = 'big'";
    await vi.waitFor(async () => expect((await psql(mine, owned)).stdout.trim()).toBe('f'), {
      timeout: 30_000,
      interval: 500,
    });
  };

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${cove.url}${path}`, {
      ...init,
      headers: { 'x-api-key': cove.apiKey, 'content-type': 'application/json', ...init.headers },
    });
  /** SQL on the operator's server as its superuser, from the host. */
  const admin = (sql: string, database = 'postgres') =>
    execFileSync(
      `/usr/lib/postgresql/${execFileSync('ls', ['/usr/lib/postgresql']).toString().trim().split('\n').at(-1)}/bin/psql`,
      ['-X', '-At', '-c', sql],
      { env: { PGHOST: ext.dir, PGUSER: 'cove', PGPASSWORD: adminPassword, PGDATABASE: database } },
    )
      .toString()
      .trim();
  const create = async (database?: string, template = 'base') =>
    pg.install(
      await e2b.Sandbox.create(template, {
        timeoutMs: 600_000,
        ...(database && { metadata: { 'cove-database': database } }),
      }),
    );
  const start = async (config: Config) => {
    cove = await startTestCove(config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
  };

  beforeAll(async () => {
    ext = startTestPostgres({ password: adminPassword });
    const base = testConfig();
    await start({
      ...base,
      databases: { ...base.databases, externalUrl: ext.url, maxSizeMB: 64, checkMs: 500 },
    });
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
  });

  afterAll(async () => {
    try {
      if (cove) expect(await stopTestCove(cove)).toEqual([]);
    } finally {
      ext?.stop(); // even when the check above fails: no server left running
    }
  });

  it("creates databases on the operator's server, with limits checked", async () => {
    const made = await api('/databases', {
      method: 'POST',
      body: JSON.stringify({ name: 'app', maxSizeMB: 16 }),
    });
    expect(made.status).toBe(201);
    const app = (await made.json()) as { databaseID: string; url: string; maxSizeMB: number };
    appId = app.databaseID;
    expect(app.maxSizeMB).toBe(16);
    expect(app.url).toContain(`@${cove.config.subnet16}.0.1:${cove.config.databases.port}/db_${appId}`);
    expect((await api('/databases', { method: 'POST', body: '{"name":"other"}' })).status).toBe(201);
    const tooBig = await api('/databases', { method: 'POST', body: '{"name":"big","maxSizeMB":65}' });
    expect(tooBig.status).toBe(400);
    expect(await tooBig.text()).toMatch(/maxSizeMB: a whole number from 1 to 64/);
    expect(admin(`SELECT datname FROM pg_database WHERE datname = 'db_${appId}'`)).toBe(`db_${appId}`);
    expect(admin(`SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = 'db_${appId}'`)).toBe('f');
  });

  it('a sandbox reaches its own database through Cove, as its own role only', async () => {
    let theirs: Sandbox;
    let none: Sandbox;
    [mine, theirs, none] = await Promise.all([create('app'), create('other'), create()]);
    const w = await psql(
      mine,
      'CREATE TABLE notes (x int); INSERT INTO notes VALUES (42); SELECT current_database()',
    );
    expect(w.stderr).toBe('');
    expect(w.stdout.trim()).toBe(`db_${appId}`);
    expect(admin('SELECT x FROM notes', `db_${appId}`)).toBe('42'); // on the operator's server
    // theirs' full URL, role and password, from mine: the forwarder lets only mine's role through
    const theirsUrl = (await sh(cove.manager, theirs.sandboxId, 'printf %s "$DATABASE_URL"')).stdout;
    const swapped = await psql(mine, 'SELECT 1', theirsUrl);
    expect(swapped.exitCode).not.toBe(0);
    expect(swapped.stderr).toMatch(/connects only as its own database role/);
    const asAdmin = await psql(
      mine,
      'SELECT 1',
      `postgresql://cove:${adminPassword}@${cove.config.subnet16}.0.1:${cove.config.databases.port}/postgres`,
    );
    expect(asAdmin.exitCode).not.toBe(0);
    expect(asAdmin.stderr).toMatch(/connects only as its own database role/);
    const mineUrl = (await sh(cove.manager, mine.sandboxId, 'printf %s "$DATABASE_URL"')).stdout;
    const ownRoleOtherDb = await psql(mine, 'SELECT 1', mineUrl.replace(/\/[^/]+$/, '/postgres'));
    expect(ownRoleOtherDb.stderr).toMatch(/connects only as its own database role/);
    const blocked = await psql(
      none,
      'SELECT 1',
      (await sh(cove.manager, mine.sandboxId, 'printf %s "$DATABASE_URL"')).stdout,
    );
    expect(blocked.exitCode).not.toBe(0);
    expect(blocked.stderr).toMatch(/timeout expired|could not connect|Connection refused/);
    await Promise.all([theirs, none].map((s) => cove.manager.kill(s.sandboxId)));
  });

  it('restores a custom-format backup through the API, as the database role, all or nothing', async () => {
    const backup = await api('/databases/app/backup?format=custom');
    expect(backup.status).toBe(200);
    const archive = Buffer.from(await backup.arrayBuffer());
    expect(archive.subarray(0, 5).toString()).toBe('PGDMP');
    expect((await psql(mine, 'UPDATE notes SET x = 7; CREATE TABLE later (y int)')).exitCode).toBe(0);
    const restore = (body: string | Uint8Array) =>
      api('/databases/app/restore', {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/octet-stream' },
      });
    expect((await restore(archive)).status).toBe(204);
    expect((await psql(mine, 'SELECT x FROM notes')).stdout.trim()).toBe('42');
    // the archive's objects are replaced; what was made after the backup stays
    expect((await psql(mine, "SELECT count(*) FROM pg_tables WHERE tablename = 'later'")).stdout.trim()).toBe(
      '1',
    );
    const plain = await restore('DROP TABLE notes;\n\\! touch /tmp/pwned\n');
    expect(plain.status).toBe(400);
    expect(await plain.text()).toMatch(/custom-format archive/);
    const broken = await restore(Buffer.concat([archive.subarray(0, archive.length - 40), Buffer.alloc(40)]));
    expect(broken.status).toBe(400);
    expect(await broken.text()).toMatch(/restore failed, nothing changed/);
    expect((await psql(mine, 'SELECT x FROM notes')).stdout.trim()).toBe('42');
    expect((await api('/databases/nope/restore', { method: 'POST', body: archive })).status).toBe(404);
  });

  it('freezes a database past its size limit with a clear error, and thaws it once space is freed', async () => {
    // a SECURITY DEFINER routine would run as the holder that owns everything while frozen
    const definer =
      "CREATE FUNCTION esc(q text) RETURNS void SECURITY DEFINER LANGUAGE plpgsql AS 'BEGIN EXECUTE q; END'";
    expect((await psql(mine, definer)).stderr).toBe('');
    const fill = await psql(
      mine,
      'CREATE TABLE big AS SELECT g, md5(g::text || random()::text) || md5(random()::text) AS pad FROM generate_series(1, 150000) g',
    );
    expect(fill.stderr).toBe('');
    const state = async () =>
      (await (await api('/databases/app')).json()) as { frozen: boolean; sizeBytes: number };
    await frozenWithBig();
    expect((await state()).sizeBytes).toBeGreaterThan(16 * 2 ** 20);
    const refused = await psql(mine, 'INSERT INTO notes VALUES (1)');
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(new RegExp(`database db_${appId} is over its size limit \\(16 MB\\)`));
    for (const sql of [
      'UPDATE notes SET x = 1',
      'CREATE TABLE more (y int)',
      'DROP TRIGGER cove_quota ON notes',
      'ALTER TABLE notes DISABLE TRIGGER ALL',
      'ALTER TABLE big OWNER TO CURRENT_USER',
      'CREATE TEMP TABLE t (y int)',
      "SELECT esc('DROP TRIGGER cove_quota ON notes')",
      "SELECT esc('ALTER TABLE notes DISABLE TRIGGER ALL')",
    ])
      expect((await psql(mine, sql)).exitCode, sql).not.toBe(0);
    expect((await psql(mine, 'SELECT count(*) FROM big')).stdout.trim()).toBe('150000'); // reads go on
    expect((await psql(mine, 'TRUNCATE big')).exitCode).toBe(0);
    await vi.waitFor(async () => expect((await state()).frozen).toBe(false), {
      timeout: 60_000,
      interval: 500,
    });
    const again = await psql(mine, 'INSERT INTO notes VALUES (2); DROP TABLE big; CREATE TABLE more (y int)');
    expect(again.stderr).toBe('');
    expect(admin(`SELECT count(*) FROM pg_roles WHERE rolname = 'dbq_${appId}'`)).toBe('0');
    expect((await psql(mine, "SELECT prosecdef FROM pg_proc WHERE proname = 'esc'")).stdout.trim()).toBe('t');
  });

  it('locks a frozen database that still grows (large objects), until its limit is raised', async () => {
    const state = async () =>
      (await (await api('/databases/app')).json()) as { frozen: boolean; locked: boolean };
    const blob = (n: number) =>
      `SELECT lo_from_bytea(0, decode(string_agg(md5(random()::text), ''), 'hex')) FROM generate_series(1, ${n})`;
    const fill =
      'CREATE TABLE big AS SELECT g, md5(random()::text) || md5(random()::text) AS pad FROM generate_series(1, 150000) g';
    expect((await psql(mine, fill)).exitCode).toBe(0);
    await frozenWithBig(); // growth is counted from the frozen size: the large object comes after
    // 8 MB more of random bytes in a large object: no privilege stops making one (its session
    // may be ended by the lock before it returns)
    const made = await psql(mine, blob(500_000));
    expect(`${made.exitCode} ${made.stderr}`).toMatch(/^0 |terminat|not permitted to log in/);
    await vi.waitFor(async () => expect((await state()).locked).toBe(true), {
      timeout: 60_000,
      interval: 500,
    });
    expect((await psql(mine, 'SELECT 1')).stderr).toMatch(/not permitted to log in/);
    const raise = (maxSizeMB: number) =>
      api('/databases/app', { method: 'PATCH', body: JSON.stringify({ maxSizeMB }) });
    expect((await raise(65)).status).toBe(400);
    expect((await raise(64)).status).toBe(200);
    await vi.waitFor(async () => expect(await state()).toMatchObject({ frozen: false, locked: false }), {
      timeout: 60_000,
      interval: 500,
    });
    const cleared = await psql(
      mine,
      'SELECT count(lo_unlink(oid)) FROM pg_largeobject_metadata; DROP TABLE big',
    );
    expect(cleared.stderr).toBe('');
  });

  it("forks and a snapshot's sandboxes reach their source's database; a restart keeps access", async () => {
    const [fork] = await e2b.Sandbox.fork(mine.sandboxId);
    const forked = fork as Sandbox;
    expect((await psql(forked, 'SELECT count(*) FROM notes')).stdout.trim()).toBe('2');
    const snapshot = await mine.createSnapshot();
    const fromSnapshot = await create(undefined, snapshot.snapshotId);
    expect((await psql(fromSnapshot, 'SELECT count(*) FROM notes')).stdout.trim()).toBe('2');

    await cove.close();
    await start(cove.config);
    expect((await psql(mine, 'SELECT x FROM notes ORDER BY x LIMIT 1')).stdout.trim()).toBe('2');
    await cove.manager.kill(forked.sandboxId);
    await vi.waitFor(async () => expect((await psql(fromSnapshot, 'SELECT 1')).stdout.trim()).toBe('1'));
    expect((await api('/databases/app', { method: 'DELETE' })).status).toBe(204);
    expect(admin(`SELECT count(*) FROM pg_database WHERE datname = 'db_${appId}'`)).toBe('0');
    expect((await psql(mine, 'SELECT 1')).exitCode).not.toBe(0);
    expect(await e2b.Sandbox.deleteSnapshot(snapshot.snapshotId)).toBe(true);
  });
});
