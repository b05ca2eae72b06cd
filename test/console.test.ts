import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import { chromium, type Browser, type Page } from 'playwright-core';
import { CONSOLE_DIR } from '../src/console/serve.ts';
import { createKeyring } from '../src/keys/keys.ts';
import { createSqliteStore } from '../src/store/sqlite.ts';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from './helpers.ts';

/** Debian's Chromium (scripts/setup.sh installs it for tests): the binary, not its wrapper script. */
const CHROMIUM = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));
if (
  canRunSandboxes &&
  process.env.CI === 'true' &&
  (!CHROMIUM || !existsSync(join(CONSOLE_DIR, 'index.html')))
)
  throw new Error(
    'the console test needs chromium and dist/console: run COVE_SETUP_TESTS=1 scripts/setup.sh',
  );

/** Set to write the screenshots docs/observability.md shows (docs/console-*.png). */
const SHOTS = process.env.COVE_CONSOLE_SCREENSHOTS === '1';
const HOSTILE = '<img src=x onerror=alert(1)>';

/**
 * The web console (issue 15) in Debian's headless Chromium: a wrong key is refused, a sandbox
 * made through the SDK shows in the list with its backend, its page shows metrics, logs and
 * the audit trail (sandbox text rendered as text), and it is killed from the console.
 */
describe.skipIf(!canRunSandboxes || !CHROMIUM)('web console', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let browser: Browser;
  let page: Page;
  const dialogs: string[] = [];
  const urls: string[] = [];

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ metricsIntervalMs: 500 }));
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    browser = await chromium.launch({ executablePath: CHROMIUM!, headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('request', (r) => urls.push(r.url()));
  });

  afterAll(async () => {
    await browser?.close();
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('refuses a wrong key and shows nothing', async () => {
    const res = await fetch(`${cove.url}/console/`);
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
    await page.goto(`${cove.url}/console/`);
    await page.getByLabel('API key').fill(`e2b_${'0'.repeat(40)}`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toContain('refused');
    expect(await page.locator('table').count()).toBe(0);
  });

  it('signs in, shows an SDK sandbox, its metrics, logs and audit trail, and kills it', async () => {
    const sbx = await Sandbox.create({ metadata: { owner: HOSTILE } });
    await sbx.commands.run(`echo '${HOSTILE}' > /tmp/x`);

    await page.getByLabel('API key').fill(cove.apiKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const row = page.locator(`tr[data-id="${sbx.sandboxId}"]`);
    await row.waitFor();
    expect(await row.locator('td').allTextContents()).toEqual(
      expect.arrayContaining([sbx.sandboxId, 'running', 'base', 'crun', `owner=${HOSTILE}`]),
    );
    if (SHOTS) await page.screenshot({ path: 'docs/console-sandboxes.png' });

    await row.getByRole('link').click();
    expect(page.url()).toContain(`#/sandboxes/${sbx.sandboxId}`);
    // The command line, from the sandbox, is shown as text in the audit trail.
    const started = page.locator('tr[data-action="process.start"]');
    await started.first().waitFor();
    expect(await started.allTextContents()).toEqual(
      expect.arrayContaining([expect.stringContaining(`echo '${HOSTILE}' > /tmp/x`)]),
    );
    await page.locator('tr[data-action="sandbox.create"]').waitFor();
    await page.locator('.chart polyline').first().waitFor();
    await page.getByText('sandbox created').first().waitFor();
    if (SHOTS) await page.screenshot({ path: 'docs/console-sandbox.png', fullPage: true });

    await page.getByRole('button', { name: 'Kill' }).click();
    await page.getByRole('button', { name: `Really kill ${sbx.sandboxId}?` }).click();
    await page.waitForURL(/#\/sandboxes$/);
    await page.locator('table.sandboxes').waitFor();
    await expect.poll(() => row.count()).toBe(0);
    expect(await sbx.isRunning()).toBe(false);
    expect(cove.manager.list().map((s) => s.id)).not.toContain(sbx.sandboxId);

    // The kill went through the API under the signed-in key, and is in the trail.
    const res = await fetch(`${cove.url}/cove/v1/audit?sandbox=${sbx.sandboxId}&action=sandbox.kill`, {
      headers: { 'x-api-key': cove.apiKey },
    });
    const { events } = (await res.json()) as { events: Array<{ keyId: string | null; fields: object }> };
    expect(events).toHaveLength(1);
    expect(events[0]!.keyId).not.toBeNull();

    // Another key sees nothing of this sandbox's trail (it is the first key's).
    const store = createSqliteStore(join(cove.config.home, 'cove.db'));
    const other = createKeyring(store).create('other').key;
    store.close();
    const theirs = await fetch(`${cove.url}/cove/v1/audit?sandbox=${sbx.sandboxId}`, {
      headers: { 'x-api-key': other },
    });
    expect(await theirs.json()).toEqual({ events: [] });

    expect(dialogs).toEqual([]); // nothing from the sandbox ran as script
    expect(urls.filter((u) => u.includes(cove.apiKey))).toEqual([]); // the key never in a URL
  });

  it('shows templates and pools, and signs out', async () => {
    await page.getByRole('link', { name: 'Templates & pools' }).click();
    await page.locator('table.templates td', { hasText: 'base' }).first().waitFor();
    if (SHOTS) await page.screenshot({ path: 'docs/console-templates.png' });
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  });
});
