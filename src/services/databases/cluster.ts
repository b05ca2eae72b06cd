import { spawn } from 'node:child_process';
import { chown, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';

/**
 * A PostgreSQL cluster Cove owns: Debian's server binaries (the `postgresql` package,
 * installed by scripts/setup.sh), its own data directory under Cove's state directory, run as
 * the `postgres` OS user (the server refuses root). Reusable: agents' databases
 * (databases.ts) and a PostgreSQL store each start their own with their own `dir` and `port`.
 *
 * - `<dir>/data` (0700, postgres): the cluster, made by initdb on the first `start()`.
 * - `<dir>/run`: the unix socket `.s.PGSQL.<port>`; the superuser `postgres` is reached only
 *   there, by peer authentication for the OS users root and postgres (pg_ident map `cove`).
 * - TCP only on `listen` (e.g. the sandboxes' bridge address), with the pg_hba lines given.
 *
 * The server is a detached process: it outlives Cove's process, as sandboxes do, so that
 * their connections survive a Cove restart; `start()` adopts a server that still runs from the
 * same directory (postmaster.pid) and starts it otherwise. `stop()` is for tests and removal.
 */
export interface ClusterOptions {
  dir: string;
  port: number;
  /** TCP addresses to listen on; none: the unix socket only. */
  listen: string[];
  /** pg_hba.conf lines after the superuser's socket line, e.g. `host sameuser all 10.11.0.0/16 scram-sha-256`. */
  hba: string[];
  /** Server settings (postgresql.conf lines `name = value`), applied at every start. */
  settings?: Record<string, string | number>;
  /** Debian's `/usr/lib/postgresql/<major>/bin`; default the newest installed. */
  binDir?: string;
}

export interface Cluster {
  readonly socketDir: string;
  readonly port: number;
  /** initdb when there is no cluster yet, then start it (or adopt the running one). Idempotent. */
  start(): Promise<void>;
  /** Fast shutdown (connections are closed); succeeds when it is not running. */
  stop(): Promise<void>;
  /** Runs SQL as the superuser over the socket (psql, stops at the first error); returns rows as `a|b` lines. */
  sql(text: string, database?: string): Promise<string>;
  /** The server binary `name` (pg_dump, psql, ...). */
  bin(name: string): string;
}

const OS_USER = 'postgres';

export async function postgresBinDir(): Promise<string> {
  const majors = (await readdir('/usr/lib/postgresql').catch(() => [] as string[]))
    .filter((v) => /^\d+$/.test(v))
    .sort((a, b) => Number(b) - Number(a));
  if (majors.length === 0)
    throw new CoveError(
      'unavailable',
      "PostgreSQL is not installed (Debian's postgresql package: scripts/setup.sh installs it)",
    );
  return `/usr/lib/postgresql/${majors[0]}/bin`;
}

export function createCluster(opts: ClusterOptions): Cluster {
  const data = join(opts.dir, 'data');
  const socketDir = join(opts.dir, 'run');
  const logFile = join(opts.dir, 'server.log');
  let binDir = opts.binDir;
  let starting: Promise<void> | undefined;

  const bin = (name: string) => join(binDir ?? '/usr/lib/postgresql/15/bin', name);
  const asPostgres = (file: string, args: string[], timeoutMs = 120_000) =>
    run('runuser', ['-u', OS_USER, '--', file, ...args], {
      timeoutMs,
      env: { PATH: process.env.PATH, LANG: 'C.UTF-8' },
    });

  async function configure(): Promise<void> {
    const settings: Record<string, string | number> = {
      listen_addresses: `'${opts.listen.join(',')}'`,
      port: opts.port,
      unix_socket_directories: `'${socketDir}'`,
      password_encryption: `'scram-sha-256'`,
      ...opts.settings,
    };
    const conf = Object.entries(settings).map(([k, v]) => `${k} = ${v}`);
    // Written at every start, so a changed port or address applies with a restart.
    await writeFile(join(data, 'cove.conf'), `# written by Cove at every start\n${conf.join('\n')}\n`);
    const hba = ['local all postgres peer map=cove', ...opts.hba];
    await writeFile(join(data, 'pg_hba.conf'), `# written by Cove at every start\n${hba.join('\n')}\n`);
    await writeFile(join(data, 'pg_ident.conf'), `cove root postgres\ncove postgres postgres\n`);
    const base = await readFile(join(data, 'postgresql.conf'), 'utf8');
    if (!base.includes("include_if_exists = 'cove.conf'"))
      await writeFile(join(data, 'postgresql.conf'), `${base}\ninclude_if_exists = 'cove.conf'\n`);
    const { uid, gid } = await osUser();
    for (const f of ['cove.conf', 'pg_hba.conf', 'pg_ident.conf', 'postgresql.conf'])
      await chown(join(data, f), uid, gid);
  }

  async function running(): Promise<boolean> {
    // pg_ctl status reads postmaster.pid and checks the process: 0 running, 3 not.
    return asPostgres(bin('pg_ctl'), ['status', '-D', data]).then(
      () => true,
      () => false,
    );
  }

  async function doStart(): Promise<void> {
    binDir ??= await postgresBinDir();
    const { uid, gid } = await osUser();
    // Cove's home is root's: the server's user needs to pass through it (o+x, as sandboxes do).
    await mkdir(opts.dir, { recursive: true, mode: 0o711 });
    await chown(opts.dir, uid, gid);
    for (const d of [data, socketDir]) {
      await mkdir(d, { recursive: true, mode: 0o700 });
      await chown(d, uid, gid);
    }
    const fresh = !(await readFile(join(data, 'PG_VERSION'), 'utf8').then(
      () => true,
      () => false,
    ));
    if (fresh)
      await asPostgres(bin('initdb'), [
        '-D',
        data,
        '-U',
        'postgres',
        '--auth=reject',
        '-E',
        'UTF8',
        '--locale=C.UTF-8',
      ]);
    await configure();
    if (await running()) {
      await asPostgres(bin('pg_ctl'), ['reload', '-D', data]);
      return;
    }
    await writeFile(logFile, '', { flag: 'a' });
    await chown(logFile, uid, gid);
    // -w: returns once the server accepts connections; the server detaches (setsid via pg_ctl).
    await asPostgres(bin('pg_ctl'), ['start', '-w', '-t', '60', '-D', data, '-l', logFile, '-s']).catch(
      async (err: unknown) => {
        const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' ');
        throw new CoveError('unavailable', `PostgreSQL did not start: ${tail || String(err)}`, {
          cause: err,
        });
      },
    );
  }

  function start(): Promise<void> {
    // Concurrent first uses share one start; a failed one may be retried.
    starting ??= doStart().catch((err: unknown) => {
      starting = undefined;
      throw err;
    });
    return starting;
  }

  return {
    socketDir,
    port: opts.port,
    bin,

    start,

    async stop() {
      starting = undefined;
      binDir ??= await postgresBinDir();
      if (await running()) await asPostgres(bin('pg_ctl'), ['stop', '-w', '-m', 'fast', '-D', data, '-s']);
    },

    async sql(text, database = 'postgres') {
      await start();
      return psql(bin('psql'), socketDir, opts.port, database, text);
    },
  };
}

/** psql as the superuser (root maps to it): SQL on stdin, unaligned rows, the first error stops it. */
function psql(file: string, host: string, port: number, database: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const args = [
      '-X',
      '-q',
      '-A',
      '-t',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      host,
      '-p',
      String(port),
      '-U',
      'postgres',
      '-d',
      database,
    ];
    const child = spawn(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH, LANG: 'C.UTF-8' },
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve(out.trim());
      else
        reject(
          new CoveError('internal', `psql: ${err.trim().split('\n').slice(-2).join(' ') || `exit ${code}`}`),
        );
    });
    child.stdin.end(text);
  });
}

async function osUser(): Promise<{ uid: number; gid: number }> {
  const line = (await readFile('/etc/passwd', 'utf8')).split('\n').find((l) => l.startsWith(`${OS_USER}:`));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined)
    throw new CoveError('unavailable', `no '${OS_USER}' user: is Debian's postgresql package installed?`);
  return { uid: Number(uid), gid: Number(gid) };
}
