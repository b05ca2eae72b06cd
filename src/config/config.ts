import { join, resolve } from 'node:path';
import { CoveError } from '../core/errors.ts';

/**
 * How Cove serves HTTPS: certificate and key files the operator has (`--tls-cert`,
 * `--tls-key`), or a local CA and wildcard certificate Cove makes once (`--tls self-signed`).
 */
export type TlsSetting = { cert: string; key: string } | { selfSigned: true };

/** Everything Cove reads from its environment, typed once. The only code that reads process.env. */
export interface Config {
  /** State root: the database, sandbox directories and the template cache (COVE_HOME). */
  home: string;
  /** Where built templates are cached (COVE_TEMPLATES_HOME, default: home). Tests share it. */
  templatesHome: string;
  /** Instance name: prefix of every host object (bridge, veths, namespaces, cgroups). */
  instance: string;
  host: string;
  port: number;
  logLevel: string;
  /** First two octets of the sandboxes' /16 (COVE_SUBNET, e.g. 10.11). */
  subnet16: string;
  maxTimeoutMs: number;
  agentTimeoutMs: number;
  /** Warm pools (COVE_POOL_MIN, COVE_POOL_MAX, COVE_POOL_BUDGET, COVE_POOL_TEMPLATES). */
  pool: { min: number; max: number; budget: number; templates: string[]; idleShrinkMs: number };
  /** Cold sandbox builds at once and waiting (COVE_BUILD_CONCURRENCY, COVE_BUILD_QUEUE); beyond: 429. */
  builds: { concurrency: number; queue: number };
  /** Template builds (docs/templates.md): at once (COVE_TEMPLATE_BUILDS), waiting
   * (COVE_TEMPLATE_BUILD_QUEUE), the largest COPY upload (COVE_TEMPLATE_UPLOAD_MAX_MB), and for
   * fromImage pulls a Docker Hub mirror (COVE_REGISTRY_MIRROR) and the registries spoken to over
   * plain HTTP (COVE_INSECURE_REGISTRIES, comma-separated; loopback ones always are). */
  templateBuilds: {
    concurrency: number;
    queue: number;
    uploadMaxBytes: number;
    registry: { mirror?: string; insecure: string[] };
  };
  /**
   * The sandbox domain (COVE_DOMAIN, `cove serve --domain`), a DNS name with an optional port
   * (`sandbox.example.com`, `cove.lan:3000`): sandbox ports are reachable as
   * `<port>-<id>.<domain>` when wildcard DNS points there, only hosts under it are sandbox
   * hosts, and create/connect replies name it so that the SDK's getHost() does too. Unset: any
   * `<port>-<id>.<name>` host is a sandbox host, and replies say `localhost:<port>`.
   */
  domain?: string;
  /**
   * HTTPS on the one port (docs/networking.md, TLS): certificate and key files (COVE_TLS_CERT
   * and COVE_TLS_KEY, `--tls-cert`/`--tls-key`), or a Cove-made local CA and wildcard
   * certificate (COVE_TLS=self-signed, `--tls self-signed`). Unset: plain HTTP.
   */
  tls?: TlsSetting;
  /** DNS servers (`ip` or `ip:port`, COVE_DNS, comma-separated) that sandboxes under an egress
   * policy and the egress proxy use; default: the host's /etc/resolv.conf. */
  dns: string[];
  /** How often each running sandbox's cpu, memory and disk use is sampled (getMetrics). */
  metricsIntervalMs: number;
  /**
   * The audit trail (src/audit): on unless COVE_AUDIT=off; records kept per sandbox
   * (COVE_AUDIT_PER_SANDBOX, 10000), days kept (COVE_AUDIT_RETENTION_DAYS, 30), bytes of each
   * process's stdout and stderr kept (COVE_AUDIT_OUTPUT_BYTES, 0: none).
   */
  audit: { enabled: boolean; perSandbox: number; retentionMs: number; outputBytes: number };
  /** What ending an MCP session does to the sandboxes it created (COVE_MCP_CLEANUP): keep them
   * (the default: an agent may hand them on) or kill them. */
  mcpCleanup: 'keep' | 'kill';
  /** Where `github/<owner>/<repo>` servers of E2B's `mcp` option are cloned from
   * (COVE_MCP_GIT_BASE, default https://github.com): `<base>/<owner>/<repo>`. */
  mcpGitBase: string;
  /** Runtime services (src/services): the port sandboxes reach them on, at their bridge's host
   * address (COVE_SERVICES_PORT), and the operator's file of providers and quotas
   * (COVE_SERVICES_CONFIG, default `<home>/services.json`). */
  services: { port: number; configPath: string };
  /** Agents' PostgreSQL server (src/services/databases), on the bridge's host address at this port (COVE_DATABASES_PORT). */
  databases: {
    port: number;
    /** An operator's PostgreSQL to create agents' databases on, instead of Cove's own cluster
     * (COVE_DATABASES_URL: an admin URL, a role with CREATEROLE and CREATEDB or a superuser). */
    externalUrl?: string;
    /** Each database's size limit in MiB, the default and the most a create may ask (COVE_DATABASES_MAX_MB, 1024). */
    maxSizeMB: number;
    /** How often sizes are checked against the limits (COVE_DATABASES_CHECK_MS, 10000). */
    checkMs: number;
  };
  /** The size limit of each volume, in MiB (COVE_VOLUME_SIZE_MB, default 1024). */
  volumeSizeMB: number;
  /** The key that encrypts secrets (COVE_SECRETS_KEY_FILE, default `<home>/secrets.key`; made at first start). */
  secretsKeyFile: string;
  /** A PEM file of CA certificates the egress proxy trusts, beside Node's roots, when it re-encrypts a
   * sandbox's intercepted HTTPS (COVE_EGRESS_TRUST_CA; for servers behind a private CA). */
  egressTrustCa?: string;
  /** COVE_IDENTITY_ISSUER: the URL relying parties reach Cove at (workload identity `iss`); default its own URL. */
  identityIssuer?: string;
  /** Disk that snapshots and sandboxes paused to disk may take in all (COVE_STORAGE_BUDGET_MB, default 10 GiB). */
  storageBudgetMiB: number;
  /** The checkout: the agent binaries and template recipes live in it. */
  root: string;
  agentBinary: string;
  mountHelper: string;
  /** agent/build/cove-statx.so, preloaded in runsc sandboxes (agent/shim/statx.c). */
  statxShim: string;
  recipesDir: string;
  crunRoot: string;
  /** The default runtime backend (COVE_RUNTIME, `cove serve --runtime`): crun, or runsc for gVisor. */
  runtime: 'crun' | 'runsc' | 'microvm';
  runscRoot: string;
  /** The microvm backend's VMs (src/runtime/microvm) and whether it refuses to run without KVM (COVE_REQUIRE_KVM, `--require-kvm`). */
  microvm: { stateRoot: string; cacheDir: string; requireKvm: boolean; readyTimeoutMs?: number };
}

export type ConfigOverrides = Partial<
  Pick<Config, 'home' | 'templatesHome' | 'host' | 'port' | 'instance' | 'subnet16' | 'logLevel' | 'domain'>
> & { runtime?: string; requireKvm?: boolean } & { tls?: string; tlsCert?: string; tlsKey?: string };

export function loadConfig(overrides: ConfigOverrides = {}, env: NodeJS.ProcessEnv = process.env): Config {
  const root = resolve(import.meta.dirname, '..', '..');
  const instance = overrides.instance ?? env.COVE_INSTANCE ?? 'cove';
  if (!/^[a-z]{1,8}$/.test(instance))
    throw new CoveError('invalid_argument', 'COVE_INSTANCE: 1-8 lowercase letters');
  const port = overrides.port ?? Number(env.COVE_PORT ?? 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new CoveError('invalid_argument', `bad port ${port}`);
  const subnet16 = overrides.subnet16 ?? env.COVE_SUBNET ?? '10.11';
  if (!/^\d{1,3}\.\d{1,3}$/.test(subnet16))
    throw new CoveError('invalid_argument', `COVE_SUBNET ${subnet16}: two octets like 10.11`);
  const home = overrides.home ?? env.COVE_HOME ?? '/var/lib/cove';
  const domain = overrides.domain ?? env.COVE_DOMAIN;
  const domainPort = /:(\d{1,5})$/.exec(domain ?? '')?.[1];
  const domainName = domainPort === undefined ? domain : domain!.slice(0, -domainPort.length - 1);
  if (
    domain !== undefined &&
    (!/^(?=.{1,253}$)([a-z0-9-]{1,63}\.)*[a-z0-9-]{1,63}$/.test(domainName!) ||
      (domainPort !== undefined && !(Number(domainPort) > 0 && Number(domainPort) < 65536)))
  )
    throw new CoveError(
      'invalid_argument',
      `domain ${domain}: a lowercase DNS name, optionally with a port (sandbox.example.com, localhost:3000)`,
    );
  const tls = tlsSetting(
    overrides.tls ?? env.COVE_TLS,
    overrides.tlsCert ?? env.COVE_TLS_CERT,
    overrides.tlsKey ?? env.COVE_TLS_KEY,
  );
  const count = (name: string, fallback: number, max = 10_000): number => {
    const n = Number(env[name] ?? fallback);
    if (!Number.isInteger(n) || n < 0 || n > max)
      throw new CoveError('invalid_argument', `${name}: a count from 0`);
    return n;
  };
  return {
    home,
    templatesHome: overrides.templatesHome ?? env.COVE_TEMPLATES_HOME ?? home,
    instance,
    host: overrides.host ?? env.COVE_HOST ?? '127.0.0.1',
    port,
    logLevel: overrides.logLevel ?? env.COVE_LOG_LEVEL ?? 'info',
    subnet16,
    maxTimeoutMs: 24 * 3600_000,
    secretsKeyFile: env.COVE_SECRETS_KEY_FILE ?? join(home, 'secrets.key'),
    ...(env.COVE_EGRESS_TRUST_CA && { egressTrustCa: env.COVE_EGRESS_TRUST_CA }),
    ...(env.COVE_IDENTITY_ISSUER && { identityIssuer: issuerUrl(env.COVE_IDENTITY_ISSUER) }),
    volumeSizeMB: count('COVE_VOLUME_SIZE_MB', 1024, 1 << 20),
    agentTimeoutMs: 5_000,
    pool: {
      min: count('COVE_POOL_MIN', 2),
      max: count('COVE_POOL_MAX', 8),
      budget: count('COVE_POOL_BUDGET', 32),
      templates: (env.COVE_POOL_TEMPLATES ?? 'base').split(',').filter(Boolean),
      idleShrinkMs: 60_000,
    },
    builds: {
      concurrency: Math.max(1, count('COVE_BUILD_CONCURRENCY', 4)),
      queue: count('COVE_BUILD_QUEUE', 1024),
    },
    templateBuilds: {
      concurrency: Math.max(1, count('COVE_TEMPLATE_BUILDS', 2)),
      queue: count('COVE_TEMPLATE_BUILD_QUEUE', 32),
      uploadMaxBytes: Math.max(1, count('COVE_TEMPLATE_UPLOAD_MAX_MB', 1024, 1 << 20)) * 2 ** 20,
      registry: {
        ...(env.COVE_REGISTRY_MIRROR && { mirror: env.COVE_REGISTRY_MIRROR }),
        insecure: (env.COVE_INSECURE_REGISTRIES ?? '').split(',').filter(Boolean),
      },
    },
    ...(domain !== undefined && { domain }),
    ...(tls && { tls }),
    dns: dnsServers(env.COVE_DNS),
    metricsIntervalMs: 5_000,
    audit: {
      enabled: onOff(env.COVE_AUDIT, 'COVE_AUDIT'),
      perSandbox: Math.max(10, count('COVE_AUDIT_PER_SANDBOX', 10_000, 10_000_000)),
      retentionMs: Math.max(1, count('COVE_AUDIT_RETENTION_DAYS', 30)) * 86_400_000,
      outputBytes: count('COVE_AUDIT_OUTPUT_BYTES', 0, 1 << 20),
    },
    mcpCleanup: mcpCleanup(env.COVE_MCP_CLEANUP),
    mcpGitBase: env.COVE_MCP_GIT_BASE || 'https://github.com',
    services: {
      port: Number(env.COVE_SERVICES_PORT ?? 49990),
      configPath: env.COVE_SERVICES_CONFIG ?? join(home, 'services.json'),
    },
    databases: {
      port: Number(env.COVE_DATABASES_PORT ?? 49991),
      ...(env.COVE_DATABASES_URL && { externalUrl: env.COVE_DATABASES_URL }),
      maxSizeMB: count('COVE_DATABASES_MAX_MB', 1024, 2 ** 24),
      checkMs: count('COVE_DATABASES_CHECK_MS', 10_000, 3_600_000),
    },
    storageBudgetMiB: storageBudget(env.COVE_STORAGE_BUDGET_MB),
    root,
    agentBinary: join(root, 'agent', 'build', 'cove-agent'),
    mountHelper: join(root, 'agent', 'build', 'cove-mount'),
    statxShim: join(root, 'agent', 'build', 'cove-statx.so'),
    recipesDir: join(root, 'templates'),
    crunRoot: `/run/${instance}/crun`,
    runtime: runtimeName(overrides.runtime ?? env.COVE_RUNTIME),
    runscRoot: `/run/${instance}/runsc`,
    microvm: {
      stateRoot: `/run/${instance}/microvm`,
      cacheDir: join(overrides.templatesHome ?? env.COVE_TEMPLATES_HOME ?? home, 'microvm'),
      requireKvm: overrides.requireKvm ?? env.COVE_REQUIRE_KVM === '1',
      // A VM not ready in this time is killed and retried once (src/runtime/microvm/ready.ts).
      ...(env.COVE_MICROVM_READY_TIMEOUT_MS && { readyTimeoutMs: Number(env.COVE_MICROVM_READY_TIMEOUT_MS) }),
    },
  };
}

function runtimeName(value: string | undefined): Config['runtime'] {
  if (value === undefined || value === '' || value === 'crun') return 'crun';
  if (value === 'runsc') return 'runsc';
  if (value === 'microvm') return 'microvm';
  throw new CoveError('invalid_argument', `runtime '${value}': expected crun, runsc or microvm`);
}

function onOff(value: string | undefined, name: string): boolean {
  if (value === undefined || value === '' || value === 'on') return true;
  if (value === 'off') return false;
  throw new CoveError('invalid_argument', `${name}: expected on or off, got '${value}'`);
}

function dnsServers(value: string | undefined): string[] {
  const servers = (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const s of servers)
    if (!/^\d{1,3}(\.\d{1,3}){3}(:\d{1,5})?$/.test(s))
      throw new CoveError('invalid_argument', `COVE_DNS: ${s} is not an IPv4 address (optionally :port)`);
  return servers;
}

function mcpCleanup(value: string | undefined): Config['mcpCleanup'] {
  if (value === undefined || value === '' || value === 'keep') return 'keep';
  if (value === 'kill') return 'kill';
  throw new CoveError('invalid_argument', `COVE_MCP_CLEANUP: expected keep or kill, got '${value}'`);
}

function tlsSetting(mode?: string, cert?: string, key?: string): TlsSetting | undefined {
  if (mode !== undefined && mode !== 'self-signed')
    throw new CoveError(
      'invalid_argument',
      `--tls ${mode}: the only mode is self-signed (or give --tls-cert and --tls-key)`,
    );
  if (mode !== undefined && (cert || key))
    throw new CoveError('invalid_argument', '--tls self-signed and --tls-cert/--tls-key: one or the other');
  if (mode) return { selfSigned: true };
  if (!cert !== !key) throw new CoveError('invalid_argument', 'TLS: give both --tls-cert and --tls-key');
  return cert && key ? { cert: resolve(cert), key: resolve(key) } : undefined;
}

/**
 * Where a CLI finds the server: COVE_URL, else the SDK's own settings (E2B_API_URL, or
 * `https://api.<E2B_DOMAIN>` as `cove serve --tls` prints them), else the local one.
 */
export function serverUrl(env: NodeJS.ProcessEnv = process.env): string {
  if (env.COVE_URL) return env.COVE_URL;
  if (env.E2B_API_URL) return env.E2B_API_URL;
  if (env.E2B_DOMAIN) return `https://api.${env.E2B_DOMAIN}`;
  return `http://127.0.0.1:${env.COVE_PORT ?? 3000}`;
}

/** The API key a CLI presents: COVE_API_KEY, else the E2B_API_KEY that `cove serve` prints. */
export function clientApiKey(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env.COVE_API_KEY || env.E2B_API_KEY || undefined;
}

function storageBudget(value: string | undefined): number {
  const mib = Number(value ?? 10_240);
  if (!Number.isSafeInteger(mib) || mib < 0)
    throw new CoveError('invalid_argument', 'COVE_STORAGE_BUDGET_MB: a number of MiB from 0');
  return mib;
}

/** An http(s) URL without a trailing slash, query or fragment (it prefixes /.well-known/...). */
function issuerUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    url = undefined;
  }
  if (!url || !/^https?:$/.test(url.protocol) || url.search || url.hash)
    throw new CoveError(
      'invalid_argument',
      `COVE_IDENTITY_ISSUER ${value}: an http(s) URL such as https://cove.example.com`,
    );
  return url.href.replace(/\/+$/, '');
}
