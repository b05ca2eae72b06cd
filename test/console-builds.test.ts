import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Template } from 'e2b';
import { canRunSandboxes } from './helpers.ts';
import { CHROMIUM, HOSTILE, SHOTS, startConsole, type ConsoleRig } from './console-helpers.ts';

/**
 * Template builds in the console (issue 15): a build started through the SDK shows in the
 * builds list, and its log is followed while it runs, lines shown as text, until it is ready.
 * From `base` (never a fresh Debian: CI time); the name is unique and deleted at the end.
 */
describe.skipIf(!canRunSandboxes || !CHROMIUM)('web console: template builds', () => {
  let rig: ConsoleRig;
  const name = `cove-console-${randomBytes(4).toString('hex')}`;

  beforeAll(async () => {
    rig = await startConsole();
  });

  afterAll(async () => {
    if (!rig) return;
    const { cove } = rig;
    await fetch(`${cove.url}/templates/${name}`, { method: 'DELETE', headers: { 'x-api-key': cove.apiKey } });
    expect(await rig.stop()).toEqual([]);
  });

  it('lists a build and follows its log live until it is ready', async () => {
    // The step's lines come 8 s apart: the console, reading each second, sees the first
    // while the build still runs.
    const t = Template()
      .fromTemplate('base')
      // The name makes the step new: layers are cached by their steps, across runs.
      .runCmd(`echo 'cove-step-one ${HOSTILE}'; sleep 8; echo cove-step-two # ${name}`);
    const { buildId } = await Template.buildInBackground(t, name);

    const { page, dialogs } = rig;
    await rig.signIn();
    await page.getByRole('link', { name: 'Templates & pools' }).click();
    const row = page.locator(`table.builds tr[data-id="${buildId}"]`);
    await row.waitFor();
    expect(await row.locator('td').nth(1).textContent()).toBe(name);
    await row.getByRole('button').click();

    const log = page.locator('.build-log');
    await expect.poll(() => log.textContent(), { timeout: 60_000 }).toContain(`cove-step-one ${HOSTILE}`);
    // Followed live: the first line showed before the build ended.
    expect(await log.getAttribute('data-status')).toBe('building');
    await expect.poll(() => log.getAttribute('data-status'), { timeout: 60_000 }).toBe('ready');
    const text = (await log.textContent()) ?? '';
    expect(text).toContain('cove-step-two');
    expect(text).toMatch(/Build finished in/);
    await expect.poll(() => row.locator('td').nth(3).textContent(), { timeout: 15_000 }).toBe('ready');
    if (SHOTS) await page.screenshot({ path: 'docs/console-builds.png', fullPage: true });
    expect(await page.locator('.build-log img').count()).toBe(0);
    expect(dialogs).toEqual([]);
  });
});
