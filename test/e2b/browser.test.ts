import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove, templateBuilt, testConfig } from '../helpers.ts';
import { decodePng } from './desktop-helpers.ts';

const loadE2b = () => import('e2b');
const loadPlaywright = () => import('playwright-core');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type Playwright = Awaited<ReturnType<typeof loadPlaywright>>;

const TEMPLATE = 'browser';
const built = await templateBuilt(TEMPLATE);

/** Served inside the sandbox on its loopback: the browser's traffic never leaves it. */
const SITE = `<!doctype html><title>cove browser test</title>
<button id="go" onclick="document.getElementById('out').textContent = 'clicked ' + (6 * 7)">Go</button>
<p id="out">waiting</p>`;

/** GET on Cove's port with a given Host header (the `*.localhost` name Node cannot resolve). */
function getWithHost(url: string, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(url, { headers: { host } }, (res) => {
      let body = '';
      res.on('data', (chunk) => (body += String(chunk)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
}

/**
 * Browser use (issue 11): the `browser` template's headless Chromium driven over CDP by
 * playwright-core on the host, through Cove's port proxy at `getHost(9222)`, and by the
 * playwright-core installed inside the sandbox.
 */
describe.skipIf(!canRunSandboxes || !built)(`Playwright over CDP on ${TEMPLATE}`, () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let pw: Playwright;
  let sbx: InstanceType<E2b['Sandbox']>;
  const viaGateway = () => ({ 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '9222' });

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    [e2b, pw] = await Promise.all([loadE2b(), loadPlaywright()]);
    sbx = await e2b.Sandbox.create(TEMPLATE, { timeoutMs: 300_000 });
    await sbx.files.write('/home/user/site/index.html', SITE);
    await sbx.commands.run('python3 -m http.server 8000 --bind 127.0.0.1 --directory /home/user/site', {
      background: true,
    });
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('answers /json/version at getHost(9222) with a WebSocket URL on that same host', async () => {
    const host = sbx.getHost(9222);
    const { status, body } = await getWithHost(`${cove.url}/json/version`, host);
    expect(status).toBe(200);
    const version = JSON.parse(body) as { Browser: string; webSocketDebuggerUrl: string };
    expect(version.Browser).toMatch(/^Chrome\//);
    expect(version.webSocketDebuggerUrl).toMatch(new RegExp(`^ws://${host}/devtools/browser/`));
  });

  it('loads a page served inside the sandbox, clicks its button, reads the result and screenshots it', async () => {
    const browser = await pw.chromium.connectOverCDP(cove.url, { headers: viaGateway() });
    try {
      const context = browser.contexts()[0] ?? (await browser.newContext());
      const page = await context.newPage();
      await page.setViewportSize({ width: 640, height: 480 });
      await page.goto('http://127.0.0.1:8000/');
      expect(await page.title()).toBe('cove browser test');
      await page.click('#go');
      expect(await page.textContent('#out')).toBe('clicked 42');
      const shot = decodePng(await page.screenshot());
      expect([shot.width, shot.height]).toEqual([640, 480]);
      await page.close();
    } finally {
      await browser.close();
    }
  });

  it('can be driven by the playwright-core installed in the sandbox', async () => {
    const script = `
      const { chromium } = require('playwright-core');
      (async () => {
        const browser = await chromium.connectOverCDP('http://127.0.0.1:9222');
        const page = await browser.contexts()[0].newPage();
        await page.goto('http://127.0.0.1:8000/');
        await page.click('#go');
        console.log(await page.textContent('#out'));
        await page.close();
        await browser.close();
      })().catch((e) => { console.error(e); process.exit(1); });`;
    await sbx.files.write('/home/user/drive.js', script);
    const r = await sbx.commands.run('node /home/user/drive.js', { timeoutMs: 60_000 });
    expect(r.stdout.trim()).toBe('clicked 42');
  });

  it('runs Chromium with a profile of its own and without background traffic', async () => {
    const args = (await sbx.commands.run('ps -o args= -C chromium')).stdout.split('\n')[0] ?? '';
    expect(args).toMatch(/--user-data-dir=\/tmp\/chromium-profile-\w+/);
    expect(args).toContain('--disable-background-networking');
    expect(args).toContain('--remote-debugging-address=127.0.0.1');
  });
});

/**
 * Behind `cove serve --tls`: the forwarder in the sandbox hears `X-Forwarded-Proto: https` from
 * the gateway and hands out `wss://` WebSocket URLs, which Playwright then opens through Cove's
 * TLS port (the process trusts Cove's self-signed CA, as NODE_EXTRA_CA_CERTS would).
 */
describe.skipIf(!canRunSandboxes || !built)(`Playwright over CDP on ${TEMPLATE}, behind TLS`, () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let sbx: InstanceType<E2b['Sandbox']>;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ tls: { selfSigned: true } }));
    tls.setDefaultCACertificates([
      ...tls.getCACertificates('default'),
      readFileSync(cove.tls!.caFile!, 'utf8'),
    ]);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    const { Sandbox } = await loadE2b();
    sbx = await Sandbox.create(TEMPLATE, { timeoutMs: 120_000 });
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('hands out wss:// URLs and drives the browser over them', async () => {
    expect(cove.url).toMatch(/^https:/);
    const headers = { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '9222' };
    const version = (await (await fetch(`${cove.url}/json/version`, { headers })).json()) as {
      webSocketDebuggerUrl: string;
    };
    expect(version.webSocketDebuggerUrl).toMatch(
      new RegExp(`^wss://${new URL(cove.url).host}/devtools/browser/`),
    );
    const { chromium } = await loadPlaywright();
    const browser = await chromium.connectOverCDP(cove.url, { headers });
    try {
      const page = await browser.contexts()[0]!.newPage();
      await page.goto('data:text/html,<title>over wss</title>');
      expect(await page.title()).toBe('over wss');
      await page.close();
    } finally {
      await browser.close();
    }
  });
});
