import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { canRunSandboxes } from './helpers.ts';

/**
 * The conformance harness (conformance/run.ts) cleans up after itself however a run ends: its
 * bridge and nftables table go once no sandbox of its instance is left, and so do the templates
 * upstream's tests built into the shared cache (named by the build records in the server's
 * state directory), but never a recipe's template. Checked on a stand-in run
 * (conformance-cleanup-child.ts) that ends cleanly, fails, or is stopped by a signal.
 */
describe.skipIf(!canRunSandboxes)('conformance harness cleanup', () => {
  const node = join(import.meta.dirname, '..', 'node_modules', '.bin', 'node');
  const child = join(import.meta.dirname, 'conformance-cleanup-child.ts');
  // an instance no Cove uses: `ip link` names stay under 16 characters
  const instance = `ccl${process.pid % 100_000}`;
  let dir: string;

  /** A template cache with a recipe's template and one upstream's tests built, and a server state naming both. */
  function world() {
    dir = mkdtempSync(join(tmpdir(), 'cove-conform-cleanup-'));
    const templatesHome = join(dir, 'cache');
    const home = join(dir, 'home');
    const recipes = join(dir, 'recipes');
    for (const name of ['base', 'e2b-test-x1y2z3']) {
      mkdirSync(join(templatesHome, 'templates', name, '0123456789abcdef', 'rootfs'), { recursive: true });
      mkdirSync(join(home, 'template-builds'), { recursive: true });
      writeFileSync(join(home, 'template-builds', `${name}-build.json`), JSON.stringify({ name }));
    }
    mkdirSync(join(recipes, 'base'), { recursive: true });
    mkdirSync(join(templatesHome, 'templates', 'not-this-runs'), { recursive: true });
    return { templatesHome, home, recipes };
  }
  const exists = {
    bridge: () => spawnSync('ip', ['link', 'show', `${instance}0`], { stdio: 'ignore' }).status === 0,
    table: () => spawnSync('nft', ['list', 'table', 'inet', instance], { stdio: 'ignore' }).status === 0,
  };

  async function run(end: 'ok' | 'fail' | 'wait', signal?: NodeJS.Signals) {
    const w = world();
    const p = spawn(node, [child, instance, w.templatesHome, w.home, w.recipes, end], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let sent = false;
    p.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (signal && !sent && out.includes('ready\n')) {
        sent = true;
        expect(exists.bridge() && exists.table()).toBe(true); // made, before the signal
        p.kill(signal);
      }
    });
    const code = await new Promise<number | null>((r) => p.once('exit', (c) => r(c)));
    return { code, out, ...w };
  }

  function expectClean(r: Awaited<ReturnType<typeof run>>) {
    expect(r.out).toContain('ready');
    expect(r.out).toContain('this step fails; the others still run');
    expect(exists.bridge()).toBe(false);
    expect(exists.table()).toBe(false);
    expect(existsSync(join(r.templatesHome, 'templates', 'e2b-test-x1y2z3'))).toBe(false);
    expect(existsSync(join(r.templatesHome, 'templates', 'base'))).toBe(true); // a recipe's
    expect(existsSync(join(r.templatesHome, 'templates', 'not-this-runs'))).toBe(true);
  }

  afterEach(() => {
    spawnSync('ip', ['link', 'del', `${instance}0`], { stdio: 'ignore' });
    spawnSync('nft', ['delete', 'table', 'inet', instance], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });

  it('after a clean run', async () => {
    const r = await run('ok');
    expect(r.code).toBe(0);
    expectClean(r);
  });

  it('after a failed run', async () => {
    const r = await run('fail');
    expect(r.code).toBe(1);
    expectClean(r);
  });

  it('after Ctrl-C and after a kill (SIGTERM), exiting as the signal', async () => {
    const interrupted = await run('wait', 'SIGINT');
    expect(interrupted.code).toBe(130);
    expectClean(interrupted);
    rmSync(dir, { recursive: true, force: true });
    const killed = await run('wait', 'SIGTERM');
    expect(killed.code).toBe(143);
    expectClean(killed);
  });

  it('keeps the bridge and table while a sandbox of the instance is left', async () => {
    spawnSync('ip', ['netns', 'add', `${instance}-left`]);
    try {
      const r = await run('ok');
      expect(exists.bridge()).toBe(true);
      expect(exists.table()).toBe(true);
      expect(existsSync(join(r.templatesHome, 'templates', 'e2b-test-x1y2z3'))).toBe(false);
    } finally {
      spawnSync('ip', ['netns', 'del', `${instance}-left`]);
    }
  });
});
