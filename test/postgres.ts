import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A private PostgreSQL cluster for one test file: initdb in a temp dir, listening on a unix
 * socket in that dir only (no TCP port, so nothing can collide or be reached from outside),
 * run as Debian's `postgres` user (the server refuses root). Needs root and the `postgresql`
 * package (scripts/setup.sh installs it).
 */
export interface TestPostgres {
  /** A connection string for `pg` (the socket dir as host). */
  url: string;
  dir: string;
  /** pg_ctl restart -m fast: every connection is cut, the server is back when it returns. */
  restart(): void;
  stop(): void;
}

function binDir(): string {
  const versions = readdirSync('/usr/lib/postgresql')
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  if (versions.length === 0) throw new Error('PostgreSQL is not installed (scripts/setup.sh installs it)');
  return `/usr/lib/postgresql/${versions[0]}/bin`;
}

/** `password`: the superuser `cove` needs it (scram), as every role does: an operator's server. */
export function startTestPostgres(opts: { password?: string } = {}): TestPostgres {
  const bin = binDir();
  const dir = mkdtempSync('/tmp/cove-pg-');
  const ids = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
  const gid = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
  chownSync(dir, Number(ids), Number(gid));
  const data = join(dir, 'data');
  const asPostgres = (cmd: string, args: string[]) =>
    execFileSync('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { stdio: 'pipe', cwd: dir });
  const auth = ['-A', 'trust'];
  if (opts.password) {
    writeFileSync(join(dir, 'pw'), opts.password, { mode: 0o600 });
    chownSync(join(dir, 'pw'), Number(ids), Number(gid));
    auth.splice(0, 2, '-A', 'scram-sha-256', `--pwfile=${join(dir, 'pw')}`);
  }
  asPostgres('initdb', ['-D', data, '-U', 'cove', ...auth, '--no-sync', '-E', 'UTF8']);
  // No TCP at all; fsync off: a test cluster's data need not survive a power cut.
  const options = `-c listen_addresses='' -k ${dir} -c fsync=off -c synchronous_commit=off`;
  const ctl = (...args: string[]) =>
    asPostgres('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', ...args]);
  ctl('-o', options, 'start');
  return {
    url: `postgresql://cove${opts.password ? `:${opts.password}` : ''}@localhost/postgres?host=${dir}`,
    dir,
    restart: () => ctl('-o', options, '-m', 'fast', 'restart'),
    stop() {
      try {
        ctl('-m', 'immediate', 'stop');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
