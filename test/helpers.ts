import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig, type Config } from '../src/config/config.ts';
import { createLogger } from '../src/core/log.ts';
import { startCove, type Cove } from '../src/main.ts';
import type { Manager } from '../src/manager/manager.ts';
import { scratchDir } from './scratch.ts';

/**
 * Integration tests run real sandboxes and need root. Without root they skip locally; under
 * CI (CI=true, set by .ci/run) a missing capability is a failure, so nothing silently stops running.
 */
export const canRunSandboxes = process.getuid?.() === 0;

/** Whether gVisor's runsc is installed (scripts/setup.sh installs it; the runsc tests need it). */
export const runscInstalled = (() => {
  try {
    execFileSync('runsc', ['--version']);
    return true;
  } catch {
    return false;
  }
})();
/** COVE_TEST_RUNTIME=runsc: this run's sandboxes are on gVisor (docs/runtimes.md). */
export const onRunsc = process.env.COVE_TEST_RUNTIME === 'runsc';
/** COVE_TEST_RUNTIME=microvm (npm run test:microvm): this run's sandboxes are microVMs. */
export const onMicrovm = process.env.COVE_TEST_RUNTIME === 'microvm';
if (!canRunSandboxes && process.env.CI === 'true') {
  throw new Error('integration tests need root in CI: run .ci/run as root');
}

/** A test instance: its own name (host objects `covet-*`), subnet 10.12/16 and state dir;
 * the template cache is shared with the default install (built by scripts/setup.sh). */
export function testConfig(overrides: Partial<Config> = {}): Config {
  return {
    ...loadConfig({
      home: scratchDir('cove-test-', { untilFileEnd: true }),
      templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
      // Several test runs may share a machine (parallel sessions): COVE_TEST_INSTANCE and
      // COVE_TEST_SUBNET give each its own host objects, so that reconcile never sees another's.
      instance: process.env.COVE_TEST_INSTANCE ?? 'covet',
      subnet16: process.env.COVE_TEST_SUBNET ?? '10.12',
      port: 0,
      logLevel: process.env.COVE_LOG_LEVEL ?? 'warn',
      // COVE_TEST_RUNTIME=runsc runs a suite's sandboxes on gVisor (docs/runtimes.md).
      ...(process.env.COVE_TEST_RUNTIME && { runtime: process.env.COVE_TEST_RUNTIME }),
    }),
    // No warm pools unless a test asks: pooled sandboxes would run beside every test's own.
    pool: { min: 0, max: 0, budget: 0, templates: [], idleShrinkMs: 60_000 },
    ...overrides,
  };
}

/** The API key every test server accepts (seeded at start): `cove.apiKey` is the same. */
export const testApiKey = `e2b_${randomBytes(20).toString('hex')}`;

export async function startTestCove(
  config = testConfig(),
): Promise<Cove & { config: Config; apiKey: string }> {
  const cove = await startCove(config, { log: createLogger(config.logLevel), apiKey: testApiKey });
  return { ...cove, config, apiKey: testApiKey };
}

/** Kills every sandbox, stops the server and returns what the host still holds of the instance. */
export async function stopTestCove(cove: Cove & { config: Config }): Promise<string[]> {
  await Promise.all(cove.manager.list().map((s) => cove.manager.kill(s.id)));
  await cove.close();
  const left = hostLeftovers(cove.config.instance, cove.config.home, cove.config.templatesHome);
  // A server keeps its bridge and nftables table when it stops (sandboxes it adopts at the next
  // start need them); a test instance has none left, so both go, and no run leaves a /16 taken.
  if (left.length === 0) {
    const { instance } = cove.config;
    spawnSync('ip', ['link', 'del', `${instance}0`], { stdio: 'ignore' });
    spawnSync('nft', ['delete', 'table', 'inet', instance], { stdio: 'ignore' });
  }
  return left;
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  signal?: string;
}

/** Runs a command in a sandbox through the manager and collects its output. */
export async function exec(
  manager: Manager,
  id: string,
  argv: string[],
  opts: { user?: string; env?: Record<string, string>; cwd?: string } = {},
): Promise<RunResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  return new Promise((resolve, reject) => {
    manager
      .exec(
        id,
        { argv, ...opts },
        {
          onData: (stream, data) => (stream === 'stderr' ? err : out).push(data),
          onExit: (r) =>
            resolve({
              stdout: Buffer.concat(out).toString(),
              stderr: Buffer.concat(err).toString(),
              exitCode: r.exitCode,
              ...(r.signal && { signal: r.signal }),
            }),
        },
      )
      .catch(reject);
  });
}

export function sh(
  manager: Manager,
  id: string,
  script: string,
  opts: { user?: string } = {},
): Promise<RunResult> {
  return exec(manager, id, ['/bin/bash', '-c', script], opts);
}

/** Every host object a Cove instance named `instance` could leave behind. */
export function hostLeftovers(instance: string, home: string, templatesHome?: string): string[] {
  const found: string[] = [];
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  found.push(...netns.filter((n) => n.startsWith(`${instance}-`)).map((n) => `netns ${n}`));
  const links = JSON.parse(
    execFileSync('ip', ['-j', 'link', 'show', 'type', 'veth']).toString() || '[]',
  ) as Array<{
    ifname: string;
    ifalias?: string;
  }>;
  found.push(
    ...links.filter((l) => l.ifalias?.startsWith(`${instance}-`)).map((l) => `veth ${l.ifname} ${l.ifalias}`),
  );
  found.push(
    ...readFileSync('/proc/mounts', 'utf8')
      .split('\n')
      .filter((l) => l.split(' ')[1]?.startsWith(home))
      .map((l) => `mount ${l.split(' ')[1]}`),
  );
  for (const hierarchy of readdirSync('/sys/fs/cgroup')) {
    const dir = join('/sys/fs/cgroup', hierarchy, instance);
    if (existsSync(dir))
      found.push(
        ...readdirSync(dir, { withFileTypes: true })
          .filter((d) => d.isDirectory())
          .map((d) => `cgroup ${dir}/${d.name}`),
      );
  }
  const crunRoot = `/run/${instance}/crun`;
  if (existsSync(crunRoot)) found.push(...readdirSync(crunRoot).map((c) => `crun ${c}`));
  const runscRoot = `/run/${instance}/runsc`;
  if (existsSync(runscRoot))
    found.push(
      ...readdirSync(runscRoot)
        .filter((f) => !f.startsWith('.'))
        .map((c) => `runsc ${c}`),
    );
  // microVMs (src/runtime/microvm): their state directories and QEMU processes.
  const microvmRoot = `/run/${instance}/microvm`;
  if (existsSync(microvmRoot))
    found.push(
      ...readdirSync(microvmRoot, { withFileTypes: true })
        .filter((d) => d.isDirectory())
        .map((d) => `microvm ${d.name}`),
    );
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    const cmdline = (() => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        return '';
      }
    })();
    if (cmdline.startsWith('qemu-system') && cmdline.includes(`${microvmRoot}/`)) found.push(`qemu ${pid}`);
  }
  const sandboxes = join(home, 'sandboxes');
  if (existsSync(sandboxes)) found.push(...readdirSync(sandboxes).map((d) => `dir ${d}`));
  // Snapshots are kept on purpose, but a test deletes what it made; `.fork-*` copies never stay.
  const snapshots = join(home, 'snapshots');
  if (existsSync(snapshots)) found.push(...readdirSync(snapshots).map((d) => `snapshot ${d}`));
  // A paused sandbox or a snapshot holds its template build with a file in its refs/ that
  // names the home it belongs to (src/manager/pause.ts): none may outlive them.
  const templates = join(templatesHome ?? home, 'templates');
  for (const name of existsSync(templates) ? readdirSync(templates) : []) {
    for (const build of readdirSync(join(templates, name))) {
      const refs = join(templates, name, build, 'refs');
      if (!existsSync(refs)) continue;
      for (const ref of readdirSync(refs))
        if (readFileSync(join(refs, ref), 'utf8').startsWith(home))
          found.push(`template ref ${name}/${build}/${ref}`);
    }
  }
  return found;
}

/** The key the first `cove serve` on a home printed, by home, and by URL for cli(). */
const printedKeys = new Map<string, string>();
const urlKeys = new Map<string, string>();

/** Starts `cove serve` as a child process (a real restart, a real crash) and waits for its URL. */
export async function spawnServer(
  config: Config,
): Promise<{ child: ChildProcess; url: string; apiKey?: string }> {
  const child = spawn(
    join(config.root, 'node_modules', '.bin', 'node'),
    [join(config.root, 'src', 'cli', 'main.ts'), 'serve', '--port', '0', '--home', config.home],
    {
      env: {
        ...process.env,
        COVE_INSTANCE: config.instance,
        COVE_SUBNET: config.subnet16,
        COVE_TEMPLATES_HOME: config.templatesHome,
        COVE_POOL_MIN: String(config.pool.min),
        COVE_POOL_MAX: String(config.pool.max),
        COVE_POOL_BUDGET: String(config.pool.budget),
        COVE_POOL_TEMPLATES: config.pool.templates.join(','),
        COVE_LOG_LEVEL: 'warn',
        COVE_RUNTIME: config.runtime,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
      const m = /serving on (http:\/\/\S+)/.exec(text);
      const key = /E2B_API_KEY=(\S+)/.exec(text)?.[1];
      if (key) printedKeys.set(config.home, key);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`cove serve exited ${code}: ${text}`)));
  });
  const apiKey = printedKeys.get(config.home);
  if (apiKey) urlKeys.set(url, apiKey);
  return { child, url, ...(apiKey && { apiKey }) };
}

export function cli(url: string, args: string[]): { stdout: string; stderr: string; status: number } {
  const root = join(import.meta.dirname, '..');
  try {
    const stdout = execFileSync(join(root, 'bin', 'cove'), args, {
      env: { ...process.env, COVE_URL: url, ...(urlKeys.has(url) && { COVE_API_KEY: urlKeys.get(url) }) },
      stdio: 'pipe',
    });
    return { stdout: stdout.toString(), stderr: '', status: 0 };
  } catch (err) {
    const e = err as { stdout: Buffer; stderr: Buffer; status: number };
    return { stdout: e.stdout.toString(), stderr: e.stderr.toString(), status: e.status };
  }
}

/**
 * Whether template `name` is built in the shared cache (tests that need it skip without it);
 * under CI its absence is a failure, since `npm test` builds it through scripts/setup.sh.
 */
export async function templateBuilt(name: string): Promise<boolean> {
  const { createTemplateStore } = await import('../src/templates/index.ts');
  const built = await createTemplateStore({
    home: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    recipesDir: join(import.meta.dirname, '..', 'templates'),
  })
    .get(name)
    .then(
      () => true,
      () => false,
    );
  if (!built && process.env.CI === 'true') {
    throw new Error(`template ${name} is not built: npm test builds it (scripts/setup.sh)`);
  }
  return built;
}

/** Points the e2b SDK at `cove`, the volume-content API included (spec 2.16: on Cove's own URL). */
export function pointSdkAt(cove: { url: string; apiKey: string }): void {
  process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = process.env.E2B_VOLUME_API_URL = cove.url;
  process.env.E2B_API_KEY = cove.apiKey;
}
