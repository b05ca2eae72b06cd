import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import type { Page } from 'playwright-core';
import { canRunSandboxes } from './helpers.ts';
import { CHROMIUM, HOSTILE, SHOTS, startConsole, type ConsoleRig } from './console-helpers.ts';

/**
 * The console's terminal and file browser (issue 15) in Debian's headless Chromium, against a
 * real sandbox: keystrokes reach a real PTY and its bytes come back, a file goes up and down
 * the round trip through envd, and a hostile file name is text. (test/console.test.ts checks
 * that chromium and dist/console are there in CI.)
 */
describe.skipIf(!canRunSandboxes || !CHROMIUM)('web console: terminal and files', () => {
  let rig: ConsoleRig;
  let page: Page;
  let cove: ConsoleRig['cove'];
  let sbx: Sandbox;

  beforeAll(async () => {
    rig = await startConsole();
    ({ page, cove } = rig);
    sbx = await Sandbox.create();
    await rig.signIn();
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.goto(`${cove.url}/console/#/sandboxes/${sbx.sandboxId}`);
  });

  afterAll(async () => {
    if (rig) expect(await rig.stop()).toEqual([]);
  });

  it('opens a terminal: keystrokes reach a PTY in the sandbox and its output shows', async () => {
    await page.getByRole('button', { name: 'Terminal', exact: true }).click();
    await expect.poll(() => page.getByTestId('terminal-status').textContent()).toContain('connected');
    await page.getByTestId('terminal').click();
    await page.keyboard.type('echo cove-$((6*7)) | tee /tmp/from-terminal; tty\n');
    const rows = page.locator('.xterm-rows');
    // The shell computed it: the typed line holds `$((6*7))`, only its output holds 42.
    await expect.poll(() => rows.textContent(), { timeout: 15_000 }).toMatch(/cove-42[\s\S]*\/dev\/pts\//);
    expect(await sbx.files.read('/tmp/from-terminal')).toBe('cove-42\n');
    if (SHOTS) await page.screenshot({ path: 'docs/console-terminal.png', fullPage: true });
    const pid = Number(
      /\(pid (\d+)\)/.exec((await page.getByTestId('terminal-status').textContent()) ?? '')?.[1],
    );
    expect((await sbx.commands.list()).map((p) => p.pid)).toContain(pid);

    // Closing the terminal ends its shell.
    await page.getByRole('button', { name: 'Close terminal' }).click();
    await expect
      .poll(async () => (await sbx.commands.list()).map((p) => p.pid), { timeout: 10_000 })
      .not.toContain(pid);

    // It is in the audit trail as any PTY the SDK opens.
    const res = await fetch(`${cove.url}/cove/v1/audit?sandbox=${sbx.sandboxId}&action=process.start`, {
      headers: { 'x-api-key': cove.apiKey },
    });
    const { events } = (await res.json()) as { events: Array<{ fields: { pid?: number; pty?: boolean } }> };
    expect(events.find((e) => e.fields.pid === pid)?.fields.pty).toBe(true);
  });

  it('lists, uploads and downloads files; a hostile name is text', async () => {
    await sbx.files.write(`/home/user/${HOSTILE}`, 'x');
    await sbx.files.write('/home/user/down.txt', 'from the sandbox\n');
    await page.getByRole('button', { name: 'Files', exact: true }).click();
    await expect.poll(() => page.getByTestId('files-path').textContent()).toBe('/home/user');
    const hostile = page.locator('table.files tr').filter({ hasText: HOSTILE });
    await hostile.waitFor();
    expect(await page.locator('table.files img').count()).toBe(0);

    // Download: the bytes the sandbox holds.
    const row = page.locator('table.files tr[data-name="down.txt"]');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      row.getByRole('button', { name: 'Download' }).click(),
    ]);
    expect(download.suggestedFilename()).toBe('down.txt');
    expect(readFileSync(await download.path(), 'utf8')).toBe('from the sandbox\n');

    // Upload: lands in the listed directory, as the template's user.
    const bytes = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
    await page
      .getByLabel('Upload files')
      .setInputFiles({ name: 'up.bin', mimeType: 'application/octet-stream', buffer: bytes });
    await page.locator('table.files tr[data-name="up.bin"]').waitFor();
    const back = await sbx.files.read('/home/user/up.bin', { format: 'bytes' });
    expect(Buffer.from(back).equals(bytes)).toBe(true);
    expect((await sbx.files.getInfo('/home/user/up.bin')).owner).toBe('user');
    if (SHOTS) await page.screenshot({ path: 'docs/console-files.png', fullPage: true });

    // Into a directory and back up.
    await page.locator('table.files').getByRole('button', { name: '..' }).click();
    await expect.poll(() => page.getByTestId('files-path').textContent()).toBe('/home');
    await page.locator('table.files').getByRole('button', { name: 'user/' }).click();
    await expect.poll(() => page.getByTestId('files-path').textContent()).toBe('/home/user');
    expect(rig.dialogs).toEqual([]);
  });
});
