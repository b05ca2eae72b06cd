import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { CoveError } from '../../core/errors.ts';
import { createCluster, postgresBinDir, type Cluster } from './cluster.ts';

/** A role's credentials, to act as it (a restore runs as the database's own role, never as the admin). */
export interface Role {
  user: string;
  password: string;
}

/**
 * Where agents' databases live: Cove's own cluster (cluster.ts) or an operator's server given
 * by an admin URL (COVE_DATABASES_URL). Both are driven the same way, by Debian's client
 * programs (psql, pg_dump, pg_restore) with libpq's environment variables: no driver, and no
 * password on a command line (`ps` would show it).
 */
export interface PgServer {
  readonly external: boolean;
  /** Managed: initdb and start (or adopt); external: one round trip, so a bad URL fails loudly. */
  start(): Promise<void>;
  /** SQL as the admin (psql, ON_ERROR_STOP); rows as `a|b` lines. */
  sql(text: string, database?: string): Promise<string>;
  /** A client program (pg_dump, pg_restore) as the admin, or as `role`, on `database`. */
  spawn(program: string, args: string[], database: string, role?: Role): ChildProcessWithoutNullStreams;
  /** Where a forwarder reaches the server (external only): TCP host and port, or a unix socket path. */
  target?: { host: string; port: number; socket?: string; sslmode: string; rootCert?: string };
  stop(): Promise<void>;
}

export interface ManagedOptions {
  dir: string;
  address: string;
  subnet: string;
  port: number;
}

export function managedServer(opts: ManagedOptions): PgServer {
  const cluster: Cluster = createCluster({
    dir: opts.dir,
    port: opts.port,
    listen: [opts.address],
    // Sandboxes: a role to its own database only. The socket: the same, for restores run as
    // the database's role (root reaches the superuser by the peer line cluster.ts puts first).
    hba: [`host sameuser all ${opts.subnet} scram-sha-256`, 'local sameuser all scram-sha-256'],
    settings: { max_connections: 200, log_connections: 'on' },
  });
  return {
    external: false,
    start: () => cluster.start(),
    sql: (text, database) => cluster.sql(text, database),
    spawn(program, args, database, role) {
      const env = { PGHOST: cluster.socketDir, PGPORT: String(opts.port), PGDATABASE: database };
      return spawnClient(
        cluster.bin(program),
        args,
        role ? { ...env, PGUSER: role.user, PGPASSWORD: role.password } : { ...env, PGUSER: 'postgres' },
      );
    },
    stop: () => cluster.stop(),
  };
}

/** libpq's variables from an admin URL: `postgresql://user:password@host:port/db?sslmode=…&host=/socket/dir`. */
export function parseAdminUrl(url: string) {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new CoveError('invalid_argument', 'COVE_DATABASES_URL: not a URL');
  }
  if (u.protocol !== 'postgresql:' && u.protocol !== 'postgres:')
    throw new CoveError('invalid_argument', 'COVE_DATABASES_URL: a postgresql:// URL');
  const socketDir = u.searchParams.get('host') ?? undefined;
  const host = socketDir ?? decodeURIComponent(u.hostname.replace(/^\[|\]$/g, ''));
  if (!host) throw new CoveError('invalid_argument', 'COVE_DATABASES_URL: no host');
  const port = Number(u.searchParams.get('port') ?? (u.port || 5432));
  const sslmode = u.searchParams.get('sslmode') ?? 'prefer';
  if (!['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'].includes(sslmode))
    throw new CoveError('invalid_argument', `COVE_DATABASES_URL: sslmode ${sslmode}`);
  const env: Record<string, string> = {
    PGHOST: host,
    PGPORT: String(port),
    PGUSER: decodeURIComponent(u.username) || 'postgres',
    PGDATABASE: decodeURIComponent(u.pathname.slice(1)) || 'postgres',
    PGSSLMODE: sslmode,
  };
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const rootCert = u.searchParams.get('sslrootcert');
  if (rootCert) env.PGSSLROOTCERT = rootCert;
  return {
    env,
    target: {
      host,
      port,
      sslmode,
      ...(rootCert && { rootCert }),
      ...(socketDir?.startsWith('/') && { socket: `${socketDir}/.s.PGSQL.${port}` }),
    },
  };
}

export function externalServer(url: string): PgServer {
  const { env, target } = parseAdminUrl(url);
  let binDir: string | undefined;
  const bin = async (name: string) => `${(binDir ??= await postgresBinDir())}/${name}`;
  const make = (file: string, args: string[], database: string | undefined, role?: Role) =>
    spawnClient(file, args, {
      ...env,
      ...(database && { PGDATABASE: database }),
      ...(role && { PGUSER: role.user, PGPASSWORD: role.password }),
    });
  return {
    external: true,
    target,
    async start() {
      await bin('psql');
      await this.sql('SELECT 1');
    },
    async sql(text, database) {
      return collect(make(await bin('psql'), PSQL, database), text);
    },
    spawn(program, args, database, role) {
      if (!binDir) throw new CoveError('unavailable', 'the database server has not started');
      return make(`${binDir}/${program}`, args, database, role);
    },
    stop: async () => {},
  };
}

const PSQL = ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1'];

function spawnClient(file: string, args: string[], env: Record<string, string>) {
  return spawn(file, args, {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { PATH: process.env.PATH, LANG: 'C.UTF-8', PGCONNECT_TIMEOUT: '10', ...env },
  });
}

/** Feeds `input`, resolves with stdout, rejects with the last lines of stderr. */
export function collect(child: ChildProcessWithoutNullStreams, input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d.slice(0, 8192)));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out.trim());
      else {
        const lines = err.trim().split('\n');
        const detail =
          (lines.find((l) => /ERROR|FATAL/.test(l)) ?? lines.slice(-2).join(' ')) || `exit ${code}`;
        reject(new CoveError('internal', `${child.spawnfile.split('/').pop()}: ${detail}`));
      }
    });
    if (input !== undefined) child.stdin.end(input);
  });
}
