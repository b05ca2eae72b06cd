import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes } from '../helpers.ts';
import {
  internetAddresses,
  startEgressWorld,
  type EgressWorld,
  type FakeInternet,
} from '../netns-internet.ts';

type E2b = EgressWorld['e2b'];
type Sandbox = InstanceType<E2b['Sandbox']>;
type Connect = { atyp?: string; host?: string; port?: number; refused?: string };
const { hosts, near } = internetAddresses();

/**
 * A sandbox's own upstream proxy (`network.egressProxy`, issue 13) through the real SDK: a
 * SOCKS5 server the test runs inside the stand-in internet's namespace (test/socks5-server.ts;
 * nothing leaves the machine) must see every outbound TCP connection, by name for allowed
 * domains, after the sandbox's filtering; a broken upstream fails closed.
 */
describe.skipIf(!canRunSandboxes)('egress through an upstream SOCKS5 proxy', () => {
  let world: EgressWorld;
  let cove: EgressWorld['cove'];
  let net: FakeInternet;
  let e2b: E2b;
  let socks: ChildProcess | undefined;
  const seen: Connect[] = [];
  const proxy = { address: `${near(80)}:1080`, username: 'sbx-user', password: 'socks-pass-7f3a' };

  async function run(sbx: Sandbox, cmd: string): Promise<string> {
    return (await sbx.commands.run(`${cmd}; echo " exit=$?"`)).stdout;
  }
  const curl = (sbx: Sandbox, url: string) =>
    run(sbx, `curl -sS --connect-timeout 20 --max-time 30 --cacert /tmp/ca.pem ${url}`);
  const bannerPy = `import socket
s = socket.create_connection(('${hosts.web}', 2222), 20)
print(s.recv(100).decode().strip())`;

  /** The SOCKS5 server, inside the stand-in internet: it reports each request on a line. */
  async function startSocks(inet: FakeInternet): Promise<void> {
    // .80 the proxy, .81 an address where nothing listens (a connection there is reset)
    for (const a of [`${near(80)}/32`, `${near(81)}/32`])
      execFileSync('ip', ['-n', inet.namespace, 'addr', 'add', a, 'dev', 'lo']);
    const node = join(import.meta.dirname, '..', '..', 'node_modules', '.bin', 'node');
    const server = join(import.meta.dirname, '..', 'socks5-server.ts');
    const args = [proxy.address.split(':')[0]!, '1080', proxy.username, proxy.password];
    socks = spawn(
      'ip',
      [
        'netns',
        'exec',
        inet.namespace,
        node,
        server,
        ...args,
        JSON.stringify(inet.names),
        `${hosts.web}:2222`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const lines = createInterface({ input: socks.stdout! });
    await new Promise<void>((resolve) =>
      lines.on('line', (line) => (line === 'ready' ? resolve() : seen.push(JSON.parse(line) as Connect))),
    );
  }

  beforeAll(async () => {
    world = await startEgressWorld({ beforeCove: startSocks });
    ({ cove, net, e2b } = world);
  });
  afterAll(async () => {
    await world?.close();
    socks?.kill('SIGKILL');
  });

  it('tunnels every TCP connection of an open sandbox; get-info shows no password', async () => {
    const sbx = await e2b.Sandbox.create('base', { network: { egressProxy: proxy } });
    await sbx.files.write('/tmp/ca.pem', net.ca);
    seen.length = 0;
    const far = await curl(sbx, 'https://www.other.test/');
    expect(far).toContain(`"address":"${hosts.far}"`);
    expect(far).toMatch(/ exit=0/);
    expect(await curl(sbx, `http://${hosts.other}/`)).toMatch(/ exit=0/);
    await sbx.files.write('/tmp/banner.py', bannerPy);
    expect(await run(sbx, 'python3 /tmp/banner.py')).toContain('banner from the far side');
    // not allowed by name: the address the sandbox dialled
    expect(seen).toEqual([
      { cmd: 1, atyp: 'ipv4', host: hosts.far, port: 443 },
      { cmd: 1, atyp: 'ipv4', host: hosts.other, port: 80 },
      { cmd: 1, atyp: 'ipv4', host: hosts.web, port: 2222 },
    ]);
    const info = await sbx.getInfo();
    expect(info.network?.egressProxy).toEqual({ address: proxy.address, username: proxy.username });
    const raw = await fetch(`${cove.url}/sandboxes/${sbx.sandboxId}`, {
      headers: { 'X-API-Key': cove.apiKey },
    });
    expect(await raw.text()).not.toContain(proxy.password);
    const audit = await fetch(`${cove.url}/cove/v1/audit?sandbox=${sbx.sandboxId}`, {
      headers: { 'X-API-Key': cove.apiKey },
    });
    const trail = await audit.text();
    expect(trail).toContain(proxy.address); // recorded, but never its password
    expect(trail).not.toContain(proxy.password);
  });

  it('keeps the password sealed in the state database, and opens it again after a restart', async () => {
    const password = `socks-pass-${randomBytes(6).toString('hex')}`;
    const sbx = await e2b.Sandbox.create('base', { network: { egressProxy: { ...proxy, password } } });
    await sbx.files.write('/tmp/ca.pem', net.ca);
    // The SOCKS server takes only its own password: a new one makes it refuse, which shows
    // which password the proxy sent without the test reading any Cove state.
    seen.length = 0;
    expect(await curl(sbx, `http://${hosts.other}/`)).not.toMatch(/ exit=0/);
    expect(seen).toEqual([{ refused: 'bad credentials', user: proxy.username }]);
    await sbx.updateNetwork({ egressProxy: proxy });
    const files = ['cove.db', 'cove.db-wal']
      .map((f) => join(cove.config.home, f))
      .filter((f) => existsSync(f));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      expect(readFileSync(f).includes(password), f).toBe(false);
      expect(readFileSync(f).includes(proxy.password), f).toBe(false);
    }
    cove = await world.restart(); // adopts the sandbox, its record read back from the database
    const again = await e2b.Sandbox.connect(sbx.sandboxId);
    seen.length = 0;
    expect(await curl(again, `http://${hosts.other}/`)).toMatch(/ exit=0/);
    expect(seen).toEqual([{ cmd: 1, atyp: 'ipv4', host: hosts.other, port: 80 }]);
    expect(JSON.stringify(await again.getInfo())).not.toContain(proxy.password);
  });

  it('asks for allowed domains by name, filters first, and applies header rules before the tunnel', async () => {
    const sbx = await e2b.Sandbox.create('base', {
      network: {
        allowOut: ['allowed.test'],
        denyOut: [e2b.ALL_TRAFFIC],
        egressProxy: proxy,
        rules: { 'allowed.test': [{ transform: { headers: { 'X-Through': 'socks' } } }] },
      },
    });
    await sbx.files.write('/tmp/ca.pem', net.ca);
    seen.length = 0;
    const ruled = await run(sbx, 'curl -sS --max-time 30 https://allowed.test/headers'); // Cove's CA: no --cacert
    expect(ruled).toMatch(/"x-through":"socks".* exit=0/s);
    expect(await curl(sbx, 'https://denied.test/')).not.toMatch(/ exit=0/);
    await sbx.files.write('/tmp/banner.py', bannerPy);
    expect(await run(sbx, 'python3 /tmp/banner.py')).not.toContain('banner');
    expect(seen).toEqual([{ cmd: 1, atyp: 'domain', host: 'allowed.test', port: 443 }]);
  });

  it('fails closed when the upstream refuses, and goes direct once the update drops it', async () => {
    const sbx = await e2b.Sandbox.create('base', {
      network: { egressProxy: { ...proxy, password: 'wrong' } },
    });
    await sbx.files.write('/tmp/ca.pem', net.ca);
    seen.length = 0;
    expect(await curl(sbx, 'https://www.other.test/')).not.toMatch(/ exit=0/);
    expect(seen).toEqual([{ refused: 'bad credentials', user: proxy.username }]);
    await sbx.updateNetwork({ egressProxy: { ...proxy, address: `${near(81)}:1080` } });
    expect(await curl(sbx, 'https://www.other.test/')).not.toMatch(/ exit=0/); // nothing listens there
    await sbx.updateNetwork({});
    seen.length = 0;
    expect(await curl(sbx, `https://${hosts.far}/`)).toMatch(/ exit=0/); // open now: its own DNS, so no name
    expect(seen).toEqual([]);
    expect((await sbx.getInfo()).network?.egressProxy).toBeUndefined();
  });

  it('refuses a bad egressProxy with 400 and creates nothing', async () => {
    const before = cove.manager.list().length;
    for (const egressProxy of [
      { address: 'no-port' },
      { address: 'proxy.test:0' },
      { address: '[::1]:1080' },
      { address: 'proxy.test:1080', password: 'only-a-password' },
      { address: 'proxy.test:1080', username: 'u'.repeat(256) },
    ]) {
      const err = await e2b.Sandbox.create('base', { network: { egressProxy } }).catch((e: unknown) => e);
      expect(String(err), JSON.stringify(egressProxy)).toMatch(/400.*network\.egressProxy/);
    }
    expect(cove.manager.list().length).toBe(before);
  });
});
