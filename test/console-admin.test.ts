import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Sandbox } from 'e2b';
import type { Page } from 'playwright-core';
import { canRunSandboxes } from './helpers.ts';
import { CHROMIUM, SHOTS, startConsole, type ConsoleRig } from './console-helpers.ts';

/**
 * The console's API keys and host pages (issue 15) in Debian's headless Chromium: a key made
 * in the console works once and is shown once, revoking it (and so the keys it made) refuses
 * them at once, a tab whose own key is revoked is signed out; the host page shows headroom
 * and a sandbox made through the SDK under its backend.
 */
describe.skipIf(!canRunSandboxes || !CHROMIUM)('web console: keys, host and pushed changes', () => {
  let rig: ConsoleRig;
  let page: Page;
  let cove: ConsoleRig['cove'];
  const call = (key: string, path: string, init: RequestInit = {}) =>
    fetch(`${cove.url}${path}`, {
      ...init,
      headers: { 'x-api-key': key, 'content-type': 'application/json', ...init.headers },
    });
  const signIn = (key?: string) => rig.signIn(key);

  beforeAll(async () => {
    rig = await startConsole();
    ({ page, cove } = rig);
  });

  afterAll(async () => {
    if (rig) expect(await rig.stop()).toEqual([]);
  });

  it('creates a key shown once, and revoking it refuses it and the keys it made', async () => {
    await signIn(cove.apiKey);
    await page.getByRole('link', { name: 'API keys' }).click();
    await page.locator('table.keys td', { hasText: '(this key)' }).waitFor();
    await page.getByLabel('Name').fill('agent');
    await page.getByRole('button', { name: 'Create key' }).click();
    const agentKey = (await page.getByTestId('new-key').textContent())!;
    expect(agentKey).toMatch(/^e2b_[0-9a-f]{40}$/);
    if (SHOTS) await page.screenshot({ path: 'docs/console-keys.png' });

    // It works, and it may make keys of its own (any key manages keys).
    expect((await call(agentKey, '/v2/sandboxes')).status).toBe(200);
    const made = await call(agentKey, '/cove/v1/keys', { method: 'POST', body: '{"name":"child"}' });
    expect(made.status).toBe(201);
    expect(made.headers.get('cache-control')).toBe('no-store');
    const child = (await made.json()) as { id: string; key: string; createdBy: string };
    expect((await call(child.key, '/v2/sandboxes')).status).toBe(200);
    // The list never shows a key or its hash again.
    const listed = await (await call(cove.apiKey, '/cove/v1/keys')).text();
    expect(listed).not.toContain(agentKey.slice(8));
    expect(listed).not.toContain('hash');
    const bad = await call(cove.apiKey, '/cove/v1/keys', { method: 'POST', body: '{"name":"<b>"}' });
    expect(bad.status).toBe(400);

    const agentRow = page.locator('table.keys tr', { hasText: 'agent' }).first();
    const agentId = (await agentRow.getAttribute('data-id'))!;
    expect(child.createdBy).toBe(agentId);
    await agentRow.getByRole('button', { name: 'Revoke' }).click();
    await agentRow.getByRole('button', { name: `Really revoke ${agentId}?` }).click();
    await expect.poll(() => page.locator(`table.keys tr[data-id="${agentId}"]`).count()).toBe(0);
    await expect.poll(() => page.locator(`table.keys tr[data-id="${child.id}"]`).count()).toBe(0);
    expect((await call(agentKey, '/v2/sandboxes')).status).toBe(401);
    expect((await call(child.key, '/v2/sandboxes')).status).toBe(401);
    expect((await call(cove.apiKey, '/v2/sandboxes')).status).toBe(200);

    // The revocation is in the audit trail under the console's key.
    const { events } = (await (await call(cove.apiKey, '/cove/v1/audit?action=api')).json()) as {
      events: Array<{ keyId: string; fields: { method: string; route: string; status: number } }>;
    };
    const deletes = events.filter(
      (e) => e.fields.method === 'DELETE' && e.fields.route === '/cove/v1/keys/:id',
    );
    expect(deletes.map((e) => e.fields.status)).toEqual([200]);
  });

  it('signs a tab out when its own key is revoked', async () => {
    const res = await call(cove.apiKey, '/cove/v1/keys', { method: 'POST', body: '{"name":"short lived"}' });
    const { key, id } = (await res.json()) as { key: string; id: string };
    await page.getByRole('button', { name: 'Sign out' }).click();
    await signIn(key);
    await page.getByRole('link', { name: 'API keys' }).click();
    const own = page.locator(`table.keys tr[data-id="${id}"]`);
    await own.getByRole('button', { name: 'Revoke' }).click();
    await own.getByRole('button', { name: `Really revoke ${id}?` }).click();
    await page.getByLabel('API key').waitFor(); // the next call was refused: signed out
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
  });

  it('shows the host: headroom, sandboxes per backend, pools', async () => {
    expect((await fetch(`${cove.url}/cove/v1/host`)).status).toBe(401);
    const sbx = await Sandbox.create();
    const host = (await (await call(cove.apiKey, '/cove/v1/host')).json()) as {
      cpus: number;
      memoryAvailableBytes: number;
      memoryBytes: number;
      diskBytes: number;
      sandboxes: Record<string, Record<string, number>>;
    };
    expect(host.cpus).toBeGreaterThan(0);
    expect(host.memoryAvailableBytes).toBeLessThanOrEqual(host.memoryBytes);
    expect(host.diskBytes).toBeGreaterThan(0);
    expect(host.sandboxes.crun?.running).toBe(1);

    await signIn(cove.apiKey);
    await page.getByRole('link', { name: 'Host' }).click();
    await page.locator('figure[data-gauge="Memory"]').waitFor();
    await expect
      .poll(() => page.locator('table.backends tr[data-backend="crun"] td').allTextContents())
      .toEqual(['crun', '1']);
    if (SHOTS) await page.screenshot({ path: 'docs/console-host.png' });
    await sbx.kill();
  });

  it('pushes creates and kills to the sandboxes list (Server-Sent Events)', async () => {
    expect((await fetch(`${cove.url}/cove/v1/sandbox-events`)).status).toBe(401);
    const abort = new AbortController();
    const res = await call(cove.apiKey, '/cove/v1/sandbox-events', { signal: abort.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = '';
    const until = async (re: RegExp) => {
      while (!re.test(text)) {
        const { value, done } = await reader.read();
        if (done) throw new Error(`the stream ended; it said: ${text}`);
        text += value;
      }
    };
    await until(/event: ready/);
    await page.getByRole('link', { name: 'Sandboxes' }).click(); // signed in by the test above
    await page.locator('[data-live="true"]').waitFor();

    const sbx = await Sandbox.create();
    await until(new RegExp(`event: created\ndata: \\{"sandboxID":"${sbx.sandboxId}"\\}`));
    await page.locator(`table.sandboxes tr[data-id="${sbx.sandboxId}"]`).waitFor();
    await sbx.kill();
    await until(new RegExp(`event: killed\ndata: \\{"sandboxID":"${sbx.sandboxId}"\\}`));
    await expect
      .poll(() => page.locator(`table.sandboxes tr[data-id="${sbx.sandboxId}"]`).count(), { timeout: 10_000 })
      .toBe(0);
    abort.abort();
  });
});
