import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/**
 * What a conformance run must undo however it ends: a clean finish, a failure, Ctrl-C or a
 * kill. Steps are registered as things are made and run once, newest first, either from the
 * run's `finally` or from a signal handler (`trapSignals`), whichever comes first; a failing
 * step is logged and the others still run.
 */
const steps: Array<{ what: string; run: () => unknown }> = [];
let running: Promise<void> | undefined;

export function onCleanup(what: string, run: () => unknown): void {
  steps.push({ what, run });
}

export function cleanup(log: (line: string) => void): Promise<void> {
  running ??= (async () => {
    for (let s = steps.pop(); s; s = steps.pop()) {
      try {
        await s.run();
      } catch (err) {
        log(`cleanup: ${s.what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
  })();
  return running;
}

/** On SIGINT, SIGTERM or SIGHUP: the cleanup, then exit 128+signal as a shell would report. */
export function trapSignals(log: (line: string) => void): void {
  for (const [signal, n] of [
    ['SIGINT', 2],
    ['SIGTERM', 15],
    ['SIGHUP', 1],
  ] as const)
    process.once(signal, () => {
      log(`\n${signal}: cleaning up`);
      void cleanup(log).finally(() => process.exit(128 + n));
    });
}

/**
 * The templates a server built, by name, from its state directory's build records
 * (`<home>/template-builds/<buildID>.json`, src/templates/build/builds.ts). The run's server
 * starts with a fresh state directory, so these are exactly the run's: upstream's tests build
 * `e2b-test-*` and a few fixed names into the template cache the machine shares.
 */
export function templatesBuiltIn(home: string): string[] {
  const dir = join(home, 'template-builds');
  const names = new Set<string>();
  for (const f of existsSync(dir) ? readdirSync(dir) : []) {
    if (!f.endsWith('.json')) continue;
    try {
      const { name } = JSON.parse(readFileSync(join(dir, f), 'utf8')) as { name?: unknown };
      if (typeof name === 'string' && /^[a-z0-9][a-z0-9._-]{0,62}$/.test(name)) names.add(name);
    } catch {
      // a record being written when the server stopped
    }
  }
  return [...names].sort();
}

/**
 * Removes the named templates' folders from the cache, but never a recipe's (`templates/<name>`
 * of the checkout, e.g. base) nor one a mount still uses (a sandbox of another server).
 * Returns what it kept.
 */
export function removeTemplates(templatesHome: string, names: string[], recipesDir: string): string[] {
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8');
  const kept: string[] = [];
  for (const name of names) {
    const dir = join(templatesHome, 'templates', name);
    if (!existsSync(dir)) continue;
    if (existsSync(join(recipesDir, name)) || mounts.includes(`${dir}/`)) kept.push(name);
    else rmSync(dir, { recursive: true, force: true });
  }
  return kept;
}

/**
 * The instance's bridge and nftables table. A server keeps both when it stops, for the
 * sandboxes it would adopt at its next start; once none of the instance's sandboxes is left
 * (no `<instance>-*` network namespace) nothing needs them. Returns the namespaces left.
 */
export function removeNetwork(instance: string): string[] {
  const netns = existsSync('/run/netns') ? readdirSync('/run/netns') : [];
  const left = netns.filter((n) => n.startsWith(`${instance}-`));
  if (left.length > 0) return left;
  spawnSync('ip', ['link', 'del', `${instance}0`], { stdio: 'ignore' });
  spawnSync('nft', ['delete', 'table', 'inet', instance], { stdio: 'ignore' });
  return [];
}
