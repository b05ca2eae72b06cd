import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { Config } from '../src/config/config.ts';
import { startTestCove, stopTestCove, testConfig } from './helpers.ts';

/** Debian's Chromium (scripts/setup.sh installs it for tests): the binary, not its wrapper script. */
export const CHROMIUM = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));

/** Set to write the screenshots docs/console.md shows (docs/console-*.png). */
export const SHOTS = process.env.COVE_CONSOLE_SCREENSHOTS === '1';

export const HOSTILE = '<img src=x onerror=alert(1)>';

export interface ConsoleRig {
  cove: Awaited<ReturnType<typeof startTestCove>>;
  browser: Browser;
  page: Page;
  /** Every dialog the page opened (dismissed): sandbox text run as script would add one. */
  dialogs: string[];
  signIn(key?: string): Promise<void>;
  stop(): Promise<string[]>;
}

/** A test Cove (the SDK pointed at it) and a headless Chromium page, for the console's tests. */
export async function startConsole(overrides: Partial<Config> = {}): Promise<ConsoleRig> {
  const cove = await startTestCove(testConfig(overrides));
  process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
  process.env.E2B_API_KEY = cove.apiKey;
  const browser = await chromium.launch({
    executablePath: CHROMIUM!,
    headless: true,
    args: ['--no-sandbox'],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  const dialogs: string[] = [];
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    void d.dismiss();
  });
  return {
    cove,
    browser,
    page,
    dialogs,
    async signIn(key = cove.apiKey) {
      await page.goto(`${cove.url}/console/`);
      await page.getByLabel('API key').fill(key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.locator('table.sandboxes').waitFor();
    },
    async stop() {
      await browser.close();
      return stopTestCove(cove);
    },
  };
}
