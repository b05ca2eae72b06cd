import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import tls from 'node:tls';

/** Cove's checkout: this folder's parent (`--cove <dir>` serves another, e.g. an export of HEAD). */
export const defaultRoot = resolve(import.meta.dirname, '..');

/**
 * The conformance run's own instance and subnet: host objects `covec-*`, sandboxes in
 * 10.25/16, so it never reconciles (kills) the sandboxes of another test run on the machine
 * (COVE_CONFORMANCE_INSTANCE and _SUBNET move it beside another conformance run).
 */
export const INSTANCE = process.env.COVE_CONFORMANCE_INSTANCE ?? 'covec';
export const SUBNET = process.env.COVE_CONFORMANCE_SUBNET ?? '10.25';

/** The template cache the server shares with the machine's other Cove instances. */
export const TEMPLATES_HOME = process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove';

/** A key in the format every SDK accepts (2.50 and older check /^e2b_[0-9a-f]+$/). */
export const PLACEHOLDER_KEY = `e2b_${'0'.repeat(40)}`;

export interface Server {
  url: string;
  /** With TLS: the sandbox domain (`cove.localhost:<port>`) for E2B_DOMAIN, and the CA to trust. */
  domain?: string;
  caFile?: string;
  home: string;
  apiKey: string;
  logFile: string;
  /** Kills every sandbox left, stops the server and removes its state directory. */
  stop(): Promise<string[]>;
}

export interface ServeOptions {
  /** `--tls self-signed`: a local CA and a certificate for cove.localhost and *.cove.localhost. */
  tls: boolean;
  /** COVE_REGISTRY_MIRROR: where Docker Hub names are pulled from (stand-ins.ts). */
  registryMirror?: string;
}

function cliEnv(home: string, opts?: ServeOptions): NodeJS.ProcessEnv {
  return {
    ...process.env,
    ...(opts?.registryMirror && { COVE_REGISTRY_MIRROR: opts.registryMirror }),
    COVE_INSTANCE: INSTANCE,
    COVE_SUBNET: SUBNET,
    COVE_TEMPLATES_HOME: TEMPLATES_HOME,
    COVE_HOME: home,
    COVE_LOG_LEVEL: process.env.COVE_LOG_LEVEL ?? 'info',
  };
}

/**
 * An API key for the SDK. Where Cove has `cove keys create`, a real one made in this server's
 * state directory; before API keys existed any well-formed key was accepted.
 */
function apiKey(root: string, home: string, url: string, opts: ServeOptions): string {
  const cli = join(root, 'src', 'cli', 'main.ts');
  const help = execFileSync(process.execPath, [cli, '--help'], { env: cliEnv(home, opts) }).toString();
  if (!/^\s+keys\b/m.test(help)) return PLACEHOLDER_KEY;
  const out = execFileSync(process.execPath, [cli, 'keys', 'create', '--name', 'conformance'], {
    env: {
      ...cliEnv(home, opts),
      COVE_URL: url,
      // The server makes its CA at start: the CLI that calls it trusts it (not the server itself).
      ...(opts.tls && { NODE_EXTRA_CA_CERTS: join(home, 'tls', 'ca.pem') }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
  const key = /\be2b_[0-9a-f]+\b/.exec(out)?.[0];
  if (!key) throw new Error(`cove keys create printed no e2b_ key: ${out}`);
  return key;
}

/** Starts `cove serve` on a free port with a fresh state directory. */
export async function startServer(root: string, logFile: string, opts: ServeOptions): Promise<Server> {
  const home = mkdtempSync(join(tmpdir(), 'cove-conformance-home-'));
  // The sandboxes' mapped roots must be able to search it.
  chmodSync(home, 0o711);
  const log = createWriteStream(logFile);
  const child: ChildProcess = spawn(
    process.execPath,
    [
      join(root, 'src', 'cli', 'main.ts'),
      'serve',
      '--port',
      '0',
      '--home',
      home,
      ...(opts.tls ? ['--tls', 'self-signed'] : []),
    ],
    // its own process group: Ctrl-C stops the run, whose cleanup then stops the server in order
    { env: cliEnv(home, opts), stdio: ['ignore', 'pipe', 'pipe'], detached: true },
  );
  child.stderr!.pipe(log, { end: false });
  let banner = '';
  const url = await new Promise<string>((resolveUrl, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      log.write(d);
      banner += d.toString();
      const m = /serving on (https?:\/\/\S+)/.exec(banner);
      if (m) resolveUrl(m[1]!);
    });
    child.once('exit', (code) =>
      reject(new Error(`cove serve exited ${code} before serving; see ${logFile}:\n${readTail(logFile)}`)),
    );
  });
  // The banner prints the SDK's settings (E2B_DOMAIN); this process trusts the CA for its own calls.
  const caFile = opts.tls ? join(home, 'tls', 'ca.pem') : undefined;
  const domain = opts.tls
    ? (/export E2B_DOMAIN=(\S+)/.exec(banner)?.[1] ?? `cove.localhost:${new URL(url).port}`)
    : undefined;
  if (caFile)
    tls.setDefaultCACertificates([...tls.getCACertificates('default'), readFileSync(caFile, 'utf8')]);
  const key = apiKey(root, home, url, opts);

  async function killAll(): Promise<void> {
    const headers = { 'x-api-key': key };
    const res = await fetch(`${url}/v2/sandboxes?limit=100`, { headers }).catch(() => undefined);
    if (!res?.ok) return;
    const list = (await res.json()) as Array<{ sandboxID: string }>;
    await Promise.all(
      list.map((s) =>
        fetch(`${url}/sandboxes/${s.sandboxID}`, { method: 'DELETE', headers }).catch(() => {}),
      ),
    );
  }

  return {
    url,
    ...(domain && { domain }),
    ...(caFile && { caFile }),
    home,
    apiKey: key,
    logFile,
    async stop() {
      await killAll();
      const exited =
        child.exitCode !== null || child.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((r) => child.once('exit', () => r()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      log.end();
      const sandboxes = join(home, 'sandboxes');
      const left = existsSync(sandboxes) ? readdirSync(sandboxes) : [];
      const mounted = readFileSync('/proc/mounts', 'utf8')
        .split('\n')
        .some((l) => l.split(' ')[1]?.startsWith(home));
      if (left.length === 0 && !mounted) rmSync(home, { recursive: true, force: true });
      return left;
    },
  };
}

function readTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '';
  }
}
