import dns, { type LookupAddress, type LookupOptions } from 'node:dns';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCove } from '../../src/main.ts';
import { loadTls } from '../../src/gateway/tls.ts';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

const SERVER = readFileSync(join(import.meta.dirname, '../../src/gateway/testdata/port-server.js'), 'utf8');
const DOMAIN = 'cove.test';

/**
 * What a machine with wildcard DNS (dnsmasq `address=/cove.test/127.0.0.1`) would answer:
 * `cove.test` and every name under it is the loopback. Node's net.connect calls
 * `dns.lookup` through the module object, so undici (the SDK's own Agent, and global fetch
 * and WebSocket) uses this one. The rest of the world resolves as before.
 */
function resolveTestDomainToLoopback(): void {
  const system = dns.lookup;
  const lookup = (hostname: string, options: unknown, callback?: unknown) => {
    const cb = (typeof options === 'function' ? options : callback) as (...a: unknown[]) => void;
    const opts = (typeof options === 'object' && options !== null ? options : {}) as LookupOptions;
    if (hostname !== DOMAIN && !hostname.endsWith(`.${DOMAIN}`))
      return system(hostname, opts as LookupOptions & { all: true }, cb);
    if (opts.all) return cb(null, [{ address: '127.0.0.1', family: 4 }] satisfies LookupAddress[]);
    cb(null, '127.0.0.1', 4);
  };
  (dns as { lookup: unknown }).lookup = lookup;
}

/** A free loopback port: the domain names the port (`cove.test:<port>`), so it is chosen first. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * HTTPS (issue 4, docs/networking.md "TLS"): Cove started as `cove serve --domain
 * cove.test:<port> --tls self-signed` does, and the E2B SDK given only E2B_DOMAIN and the API
 * key, so that it builds its default URLs: `https://api.cove.test:<port>` for the API and
 * `https://49983-<id>.cove.test:<port>` for envd (spec 1.2). The SDK accepts a port in the
 * domain (it interpolates it), so no privileged 443 is needed. The process trusts the CA as
 * NODE_EXTRA_CA_CERTS would (tls.setDefaultCACertificates, which undici's connections use) and
 * resolves *.cove.test to the loopback: all traffic stays on this machine.
 */
describe.skipIf(!canRunSandboxes)('HTTPS with a self-signed wildcard certificate', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let sbx: InstanceType<E2b['Sandbox']>;

  beforeAll(async () => {
    const port = await freePort();
    cove = await startTestCove(testConfig({ port, domain: `${DOMAIN}:${port}`, tls: { selfSigned: true } }));
    const ca = readFileSync(cove.tls!.caFile!, 'utf8');
    tls.setDefaultCACertificates([...tls.getCACertificates('default'), ca]);
    resolveTestDomainToLoopback();
    delete process.env.E2B_API_URL;
    delete process.env.E2B_SANDBOX_URL;
    delete process.env.E2B_DEBUG;
    process.env.E2B_DOMAIN = cove.domain;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base');
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('serves the API at https://api.<domain> and envd at https://49983-<id>.<domain>', async () => {
    expect(cove.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(cove.domain).toBe(`${DOMAIN}:${new URL(cove.url).port}`);
    const listed = await e2b.Sandbox.list().nextItems();
    expect(listed.map((s) => s.sandboxId)).toContain(sbx.sandboxId);

    const run = await sbx.commands.run('echo hi');
    expect([run.exitCode, run.stdout]).toEqual([0, 'hi\n']);
    await sbx.files.write('/home/user/a.txt', 'over tls');
    expect(await sbx.files.read('/home/user/a.txt')).toBe('over tls');
    // A signed download URL is https://49983-<id>.<domain>/files?...: a plain fetch works.
    const url = await sbx.downloadUrl('/home/user/a.txt');
    expect(url).toMatch(new RegExp(`^https://49983-${sbx.sandboxId}\\.${DOMAIN.replace('.', '\\.')}:`));
    expect(await (await fetch(url)).text()).toBe('over tls');
  });

  it('reaches a server in the sandbox at https://getHost(8000), and a WebSocket at wss://', async () => {
    await sbx.files.write('/home/user/www/index.html', 'hello from python');
    await sbx.commands.run('cd /home/user/www && python3 -m http.server 8000', { background: true });
    await sbx.files.write('/home/user/port-server.mjs', SERVER);
    await sbx.commands.run('node /home/user/port-server.mjs 8080', { background: true });
    const ready = async (port: number) => {
      for (let i = 0; i < 100; i++) {
        const res = await fetch(`https://${sbx.getHost(port)}/`);
        await res.arrayBuffer();
        if (res.status !== 502) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error(`nothing listens on ${port}`);
    };
    await Promise.all([ready(8000), ready(8080)]);

    expect(sbx.getHost(8000)).toBe(`8000-${sbx.sandboxId}.${cove.domain}`);
    const res = await fetch(`https://${sbx.getHost(8000)}/index.html`);
    expect([res.status, await res.text()]).toEqual([200, 'hello from python']);
    const seen = (await (await fetch(`https://${sbx.getHost(8080)}/headers`)).json()) as {
      rawHeaders: string[];
    };
    expect(seen.rawHeaders).toEqual(expect.arrayContaining(['X-Forwarded-Proto', 'https']));

    const ws = new WebSocket(`wss://${sbx.getHost(8080)}/`);
    await new Promise((resolve, reject) => {
      ws.onopen = resolve;
      ws.onerror = reject;
    });
    const echoed = new Promise<string>((resolve) => (ws.onmessage = (e) => resolve(String(e.data))));
    ws.send('ping over wss');
    expect(await echoed).toBe('ping over wss');
    ws.close();
  });

  it('makes the CA once: a second load reuses it, and the key files are 0600', async () => {
    const dir = join(cove.config.home, 'tls');
    const again = await loadTls({ selfSigned: true }, dir, cove.domain);
    expect(again.cert.equals(cove.tls!.cert)).toBe(true);
    expect(again.caFile).toBe(cove.tls!.caFile);
    const { statSync } = await import('node:fs');
    for (const f of ['key.pem', 'ca-key.pem']) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
  });

  it('refuses to start with an unreadable certificate or a key of another certificate', async () => {
    const config = testConfig({ tls: { cert: '/nonexistent/cert.pem', key: '/nonexistent/key.pem' } });
    await expect(startCove(config)).rejects.toThrow(
      'TLS certificate /nonexistent/cert.pem: cannot read it (ENOENT)',
    );
    const other = await loadTls({ selfSigned: true }, join(config.home, 'other'), 'other.test');
    const key = join(config.home, 'other.key');
    writeFileSync(key, other.key);
    const mismatched = { ...config, tls: { cert: join(cove.config.home, 'tls', 'cert.pem'), key } };
    await expect(startCove(mismatched)).rejects.toThrow(
      /TLS key .*other\.key does not belong to certificate/,
    );
  });
});
