import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, sh, startTestCove, stopTestCove, testConfig } from './helpers.ts';
import { sandboxPsql, stopDatabaseServer } from './sandbox-psql.ts';

const loadE2b = () => import('e2b');
type Sandbox = Awaited<ReturnType<Awaited<ReturnType<typeof loadE2b>>['Sandbox']['create']>>;

/**
 * Agents' databases (issue 14 part 3) on a real PostgreSQL (Debian's, installed by setup.sh),
 * used from inside real sandboxes with psql (copied in: sandbox-psql.ts).
 */
describe.skipIf(!canRunSandboxes)('databases', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let e2b: Awaited<ReturnType<typeof loadE2b>>;
  let mine: Sandbox; // created with database 'app'
  let theirs: Sandbox; // created with database 'other'
  let none: Sandbox; // created with no database

  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${cove.url}${path}`, {
      ...init,
      headers: { 'x-api-key': cove.apiKey, 'content-type': 'application/json', ...init.headers },
    });
  const pg = sandboxPsql(() => cove.manager);
  const withPsql = (sbx: Sandbox) => pg.install(sbx);
  const psql = pg.run;
  const create = async (database?: string) =>
    withPsql(
      await e2b.Sandbox.create('base', {
        timeoutMs: 600_000,
        ...(database && { metadata: { 'cove-database': database } }),
      }),
    );

  beforeAll(async () => {
    cove = await startTestCove(testConfig());
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
  });

  afterAll(async () => {
    if (!cove) return;
    expect(await stopTestCove(cove)).toEqual([]);
    await stopDatabaseServer(cove.config);
  });

  it('creates databases per key, with names checked', async () => {
    const made = await api('/databases', { method: 'POST', body: JSON.stringify({ name: 'app' }) });
    expect(made.status).toBe(201);
    const app = (await made.json()) as { databaseID: string; name: string; url: string };
    expect(app.url).toMatch(new RegExp(`^postgresql://db_${app.databaseID}:[0-9a-f]{64}@`));
    expect((await api('/databases', { method: 'POST', body: '{"name":"other"}' })).status).toBe(201);
    expect((await api('/databases', { method: 'POST', body: '{"name":"app"}' })).status).toBe(409);
    for (const name of ['', '../x', 'a b', "x'; DROP ROLE postgres; --", 'x'.repeat(64)])
      expect((await api('/databases', { method: 'POST', body: JSON.stringify({ name }) })).status).toBe(400);
    const list = (await (await api('/databases')).json()) as Array<{ name: string; url?: string }>;
    expect(list.map((d) => d.name)).toEqual(['app', 'other']);
    expect(list[0]?.url).toBeUndefined();
    // an unknown database refuses the create before anything is built
    const before = cove.manager.list().length;
    await expect(e2b.Sandbox.create('base', { metadata: { 'cove-database': 'nope' } })).rejects.toThrow(
      /database nope not found/,
    );
    expect(cove.manager.list().length).toBe(before);
  });

  it('a sandbox reaches its own database, not another one, and one without a database reaches none', async () => {
    [mine, theirs, none] = await Promise.all([create('app'), create('other'), create()]);
    const w = await psql(
      mine,
      'CREATE TABLE notes (x int); INSERT INTO notes VALUES (42); SELECT current_database()',
    );
    expect(w.stderr).toBe('');
    expect(w.stdout.trim()).toMatch(/^db_[a-z0-9]{20}$/);
    const own = w.stdout.trim();
    const other = (await psql(theirs, 'SELECT current_database()')).stdout.trim();
    expect(other).not.toBe(own);
    // mine's role and password, asking for theirs' database: refused by pg_hba (sameuser) and CONNECT
    const swapped = await psql(
      mine,
      'SELECT 1',
      `$(printf %s "$DATABASE_URL" | sed 's#/${own}$#/${other}#')`,
    );
    expect(swapped.exitCode).not.toBe(0);
    expect(swapped.stderr).toMatch(/no pg_hba.conf entry|permission denied/);
    const theirsReads = await psql(theirs, "SELECT count(*) FROM pg_tables WHERE tablename = 'notes'");
    expect(theirsReads.stdout.trim()).toBe('0');
    // no DATABASE_URL, and the firewall drops its packets to the server, with mine's full URL too
    expect((await sh(cove.manager, none.sandboxId, 'printf %s "${DATABASE_URL-unset}"')).stdout).toBe(
      'unset',
    );
    const url = (await sh(cove.manager, mine.sandboxId, 'printf %s "$DATABASE_URL"')).stdout;
    const blocked = await psql(none, 'SELECT 1', url);
    expect(blocked.exitCode).not.toBe(0);
    expect(blocked.stderr).toMatch(/timeout expired|could not connect|Connection refused/);
  });

  it('refuses role escalation', async () => {
    for (const sql of [
      'ALTER ROLE CURRENT_USER SUPERUSER',
      'ALTER ROLE CURRENT_USER CREATEROLE',
      'CREATE ROLE evil LOGIN',
      'CREATE DATABASE evil',
      'SET ROLE postgres',
      "COPY (SELECT 1) TO PROGRAM 'id'",
      "SELECT pg_read_file('/etc/passwd')",
      'ALTER SYSTEM SET work_mem = 1',
    ]) {
      const r = await psql(mine, sql);
      expect(r.exitCode, sql).not.toBe(0);
      expect(r.stderr, sql).toMatch(/permission denied|must be superuser|must have|not allowed/i);
    }
    expect(
      (
        await psql(
          mine,
          'SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = CURRENT_USER',
        )
      ).stdout.trim(),
    ).toBe('f');
  });

  it('backs up with pg_dump and restores with pg_restore', async () => {
    const r = await api('/databases/app/backup');
    expect(r.status).toBe(200);
    const dump = await r.text();
    expect(dump).toContain('CREATE TABLE public.notes');
    expect(dump).toMatch(/COPY public\.notes \(x\) FROM stdin;\n42\n/);
    expect((await api('/databases/nope/backup')).status).toBe(404);
    // restore: a custom-format archive, run as the database's role over the server's socket
    const archive = Buffer.from(await (await api('/databases/app/backup?format=custom')).arrayBuffer());
    expect((await psql(mine, 'DELETE FROM notes')).exitCode).toBe(0);
    const restored = await api('/databases/app/restore', { method: 'POST', body: archive });
    expect(restored.status).toBe(204);
    expect((await psql(mine, 'SELECT x FROM notes')).stdout.trim()).toBe('42');
  });

  it('has a CLI: cove db create, list, backup, delete', async () => {
    // helpers.ts cli() blocks this process, which serves the API here: the CLI runs beside it
    const cli = (_url: string, args: string[]) =>
      new Promise<{ stdout: string; stderr: string; status: number }>((resolve) =>
        execFile(
          join(import.meta.dirname, '..', 'bin', 'cove'),
          args,
          { env: { ...process.env, COVE_URL: cove.url } },
          (err, stdout, stderr) => resolve({ stdout, stderr, status: err ? Number(err.code ?? 1) : 0 }),
        ),
      );
    const made = await cli(cove.url, ['db', 'create', 'from-cli']);
    expect(made.status, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/^postgresql:\/\/db_[a-z0-9]{20}:/);
    expect((await cli(cove.url, ['db', 'list'])).stdout).toMatch(/from-cli/);
    const file = join(cove.config.home, 'app.sql');
    expect((await cli(cove.url, ['db', 'backup', 'app', '-o', file])).status).toBe(0);
    expect(readFileSync(file, 'utf8')).toContain('CREATE TABLE public.notes');
    expect((await cli(cove.url, ['db', 'delete', 'from-cli'])).status).toBe(0);
    const again = await cli(cove.url, ['db', 'delete', 'from-cli']);
    expect(again.status).not.toBe(0);
    expect(again.stderr).toMatch(/database from-cli not found/);
  });

  it('keeps data and access across a Cove restart; a database outlives its sandboxes; delete is final', async () => {
    await cove.close();
    cove = await startTestCove(cove.config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    expect((await psql(mine, 'SELECT x FROM notes')).stdout.trim()).toBe('42');
    expect(
      (
        await psql(
          none,
          'SELECT 1',
          (await sh(cove.manager, mine.sandboxId, 'printf %s "$DATABASE_URL"')).stdout,
        )
      ).exitCode,
    ).not.toBe(0);
    const address = cove.manager.get(mine.sandboxId).address;
    const clients = () =>
      execFileSync('nft', ['list', 'set', 'inet', cove.config.instance, 'db_clients']).toString();
    expect(clients()).toContain(address);
    await cove.manager.kill(mine.sandboxId);
    await vi.waitFor(() => expect(clients()).not.toMatch(new RegExp(`${address.replaceAll('.', '\\.')}\\b`)));
    const again = await create('app');
    expect((await psql(again, 'SELECT x FROM notes')).stdout.trim()).toBe('42');
    expect((await api('/databases/other', { method: 'DELETE' })).status).toBe(204);
    expect((await psql(theirs, 'SELECT 1')).exitCode).not.toBe(0);
    expect((await api('/databases/other')).status).toBe(404);
    expect(((await (await api('/databases')).json()) as unknown[]).length).toBe(1);
    await cove.manager.kill(again.sandboxId);
  });
});
