import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { canRunSandboxes } from '../helpers.ts';
import { startEgressWorld, type EgressWorld, type FakeInternet } from '../netns-internet.ts';

type E2b = EgressWorld['e2b'];
type Sandbox = InstanceType<E2b['Sandbox']>;

/**
 * Egress policy and public-traffic controls (spec 2.3, 2.11; issue 4) through the real SDK,
 * against a stand-in internet in a network namespace (netns-internet.ts) into which every
 * packet the instance's sandboxes send is routed: nothing reaches the real network, even if a
 * policy under test is broken. A refused connection must fail at once: curl's exit status 7
 * ("could not connect": a reset or an ICMP refusal) or, for names the egress proxy refuses
 * after the first bytes, 35/52/56; a hang would be 28 (its timeout).
 */
describe.skipIf(!canRunSandboxes)('egress policy and public traffic', () => {
  let world: EgressWorld;
  let cove: EgressWorld['cove'];
  let net: FakeInternet;
  let e2b: E2b;

  async function create(opts: Parameters<E2b['Sandbox']['create']>[1] = {}): Promise<Sandbox> {
    const sbx = await e2b.Sandbox.create('base', opts);
    await sbx.files.write('/tmp/ca.pem', net.ca);
    return sbx;
  }

  /** curl's exit status and output; never throws (a refused connection is a result here). */
  async function curl(sbx: Sandbox, args: string): Promise<{ code: number; out: string }> {
    const r = await sbx.commands.run(
      `curl -sS --cacert /tmp/ca.pem --connect-timeout 20 --max-time 30 ${args}; echo " exit=$?"`,
    );
    const m = / exit=(\d+)\n?$/.exec(r.stdout);
    return { code: Number(m?.[1] ?? -1), out: r.stdout.replace(/ exit=\d+\n?$/, '') };
  }
  const reached = async (sbx: Sandbox, url: string, extra = '') => {
    const r = await curl(sbx, `${extra} ${url}`);
    expect(r.code, `${url}: ${r.out}`).toBe(0);
    return JSON.parse(r.out) as { address: string; host: string };
  };
  const refused = async (sbx: Sandbox, url: string) => {
    const r = await curl(sbx, url);
    expect([7, 35, 52, 56], `${url}: exit ${r.code} ${r.out}`).toContain(r.code);
  };

  /** Through the gateway by headers (spec 1.3), as a Node client without *.localhost does. */
  const viaGateway = (sbx: Sandbox, port: number, headers: Record<string, string> = {}) =>
    fetch(new URL('/', cove.url), {
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': String(port), ...headers },
    });
  async function serve(sbx: Sandbox, port: number, script: string): Promise<void> {
    await sbx.files.write(`/tmp/server-${port}.py`, script);
    await sbx.commands.run(`python3 /tmp/server-${port}.py`, { background: true });
    await sbx.commands.run(
      `for i in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', ${port}), 1)" 2>/dev/null && exit 0; sleep 0.1; done; exit 1`,
    );
  }
  const HEADERS_SERVER = (port: number, bind = '0.0.0.0') => `
import http.server, json
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({'host': self.headers.get('Host')}).encode()
        self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('${bind}', ${port}), H).serve_forever()
`;

  beforeAll(async () => {
    world = await startEgressWorld();
    ({ cove, net, e2b } = world);
  });
  afterAll(() => world?.close());

  it('by default a sandbox reaches the stand-in internet, and only it', async () => {
    const sbx = await create();
    expect(await reached(sbx, `http://${net.hosts.web}/`)).toMatchObject({ address: net.hosts.web });
    expect(await reached(sbx, `https://${net.hosts.far}/`)).toMatchObject({ address: net.hosts.far });
    // anything else ends in the namespace, which has no route onwards
    const lost = await sbx.commands.run('curl -sS --connect-timeout 2 http://192.0.2.77/; echo "exit=$?"');
    expect(lost.stdout).toMatch(/exit=(7|28)/);
  });

  it('allowInternetAccess: false refuses every destination at once, DNS included', async () => {
    const sbx = await create({ allowInternetAccess: false });
    await refused(sbx, `http://${net.hosts.web}/`);
    await refused(sbx, `https://${net.hosts.far}/`);
    const dns = await sbx.commands.run(`getent hosts allowed.test; echo "exit=$?"`);
    expect(dns.stdout).toMatch(/exit=2/);
    expect((await sbx.getInfo()).allowInternetAccess).toBe(false);
  });

  it('allowOut wins over denyOut: CIDRs', async () => {
    const sbx = await create({
      network: { denyOut: [e2b.ALL_TRAFFIC], allowOut: [net.hosts.web, net.nets.far] },
    });
    await reached(sbx, `http://${net.hosts.web}/`);
    await reached(sbx, `https://${net.hosts.far}/`);
    await refused(sbx, `http://${net.hosts.other}/`);
    const other = await create({ network: { denyOut: [net.hosts.other] } });
    await refused(other, `https://${net.hosts.other}/`);
    await reached(other, `http://${net.hosts.web}/`);
  });

  it('no allowOut opens the metadata address, another sandbox or the host', async () => {
    const target = await create();
    await serve(target, 8080, HEADERS_SERVER(8080));
    const { address } = cove.manager.get(target.sandboxId);
    const gateway = address.replace(/\.\d+\.\d+$/, '.0.1');
    const sbx = await create({
      network: {
        denyOut: [e2b.ALL_TRAFFIC],
        allowOut: ['169.254.0.0/16', '10.0.0.0/8', net.nets.near],
      },
    });
    await reached(sbx, `http://${net.hosts.web}/`); // the allow list works…
    for (const url of [
      `http://${net.hosts.metadata}/`,
      `http://${address}:8080/`,
      `http://${gateway}:${new URL(cove.url).port}/health`,
    ]) {
      const r = await sbx.commands.run(`curl -sS --connect-timeout 2 ${url}; echo " exit=$?"`);
      expect(r.stdout, url).toMatch(/ exit=(7|28)$/m); // …but not for these
    }
  });

  it('allowOut by domain: the egress proxy lets allowed names through, by Host and by SNI', async () => {
    const sbx = await create({
      network: { denyOut: [e2b.ALL_TRAFFIC], allowOut: ['allowed.test', '*.other.test', 'loopback.test'] },
    });
    // names resolve in the sandbox through Cove's DNS relay
    expect((await sbx.commands.run('getent hosts api.allowed.test allowed.test')).stdout).toMatch(
      new RegExp(`${net.hosts.web.replaceAll('.', '\\.')}\\s+allowed\\.test`),
    );
    expect(await reached(sbx, 'https://allowed.test/')).toEqual({
      address: net.hosts.web,
      host: 'allowed.test',
    });
    expect(await reached(sbx, 'http://allowed.test/')).toEqual({
      address: net.hosts.web,
      host: 'allowed.test',
    });
    expect(await reached(sbx, 'https://www.other.test/')).toMatchObject({ address: net.hosts.far });
    await refused(sbx, 'https://api.allowed.test/'); // an exact name does not cover its subdomains
    await refused(sbx, 'https://denied.test/');
    await refused(sbx, 'http://denied.test/');
    await refused(sbx, `https://${net.hosts.web}/`); // an address is no name: nothing to allow
    // The proxy connects to what the name resolves to, not to where the sandbox aimed it.
    expect(
      await reached(sbx, 'https://allowed.test/', `--resolve allowed.test:443:${net.hosts.other}`),
    ).toMatchObject({
      address: net.hosts.web,
    });
    // and never to the host or a private network, whatever an allowed name resolves to
    await refused(sbx, 'http://loopback.test/');
  });

  it('updateNetwork applies to new connections at once, and an empty update clears it', async () => {
    const sbx = await create();
    await reached(sbx, `http://${net.hosts.other}/`);
    await sbx.updateNetwork({ denyOut: [net.hosts.other] });
    await refused(sbx, `http://${net.hosts.other}/`);
    await reached(sbx, `http://${net.hosts.web}/`);
    expect((await sbx.getInfo()).network).toMatchObject({ denyOut: [`${net.hosts.other}/32`], allowOut: [] });
    await sbx.updateNetwork({ allowInternetAccess: false });
    await refused(sbx, `http://${net.hosts.web}/`);
    await sbx.updateNetwork({});
    await reached(sbx, `http://${net.hosts.other}/`);
    expect((await sbx.getInfo()).allowInternetAccess).toBe(true);
    // Updates at once: whichever lands last, the rules and the record agree.
    await Promise.all([
      sbx.updateNetwork({ denyOut: [net.hosts.other] }),
      sbx.updateNetwork({}),
      sbx.updateNetwork({ denyOut: [net.hosts.other] }),
    ]);
    const recorded = (await sbx.getInfo()).network?.denyOut ?? [];
    if (recorded.length > 0) await refused(sbx, `http://${net.hosts.other}/`);
    else await reached(sbx, `http://${net.hosts.other}/`);
  });

  it('bad input is a 400 that says why, and changes nothing', async () => {
    for (const [network, message] of [
      [{ denyOut: ['10.0.0.0/33'] }, /not a valid IPv4/],
      [{ denyOut: ['example.com'] }, /only be allowed/],
      [{ allowOut: ['exa mple.com'], denyOut: ['0.0.0.0/0'] }, /allowOut\[0\]/],
      [{ allowOut: ['allowed.test'] }, /ALL_TRAFFIC/],
      [{ httpsPorts: [70000] }, /httpsPorts/],
    ] as Array<[Record<string, string[] | number[]>, RegExp]>) {
      const err = await e2b.Sandbox.create('base', { network }).catch((e: unknown) => e);
      expect(err, JSON.stringify(network)).toBeInstanceOf(e2b.SandboxError);
      expect(String(err)).toMatch(/400/);
      expect(String(err)).toMatch(message);
    }
    const sbx = await create({ network: { denyOut: [net.hosts.other] } });
    await expect(sbx.updateNetwork({ denyOut: ['1.2.3.4/40'] })).rejects.toThrow(/400.*not a valid IPv4/);
    await refused(sbx, `http://${net.hosts.other}/`);
    expect((await sbx.getInfo()).network?.denyOut).toEqual([`${net.hosts.other}/32`]);
  });

  it('allowPublicTraffic: false wants the traffic access token at the port proxy; envd keeps its own', async () => {
    const sbx = await create({ network: { allowPublicTraffic: false } });
    expect(sbx.trafficAccessToken).toMatch(/^[0-9a-f]{64}$/);
    await serve(sbx, 8080, HEADERS_SERVER(8080));
    const missing = await viaGateway(sbx, 8080);
    expect([missing.status, await missing.json()]).toEqual([
      403,
      {
        sandboxId: sbx.sandboxId,
        message:
          "Sandbox is secured with traffic access token. Token header 'e2b-traffic-access-token' is missing",
        code: 403,
      },
    ]);
    expect((await viaGateway(sbx, 8080, { 'e2b-traffic-access-token': 'x'.repeat(64) })).status).toBe(403);
    const ok = await viaGateway(sbx, 8080, { 'e2b-traffic-access-token': sbx.trafficAccessToken! });
    expect(ok.status).toBe(200);
    expect((await sbx.commands.run('echo envd')).stdout).toBe('envd\n');
    // without the setting, no token is asked for
    const open = await create();
    expect(open.trafficAccessToken).toBeUndefined();
    await serve(open, 8080, HEADERS_SERVER(8080));
    expect((await viaGateway(open, 8080)).status).toBe(200);
  });

  // The code interpreter SDK sends the token to its server on port 49999 by itself (spec 1.3).
  const ciBuilt = existsSync(
    `${process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove'}/templates/code-interpreter-v1/current`,
  );
  it.skipIf(!ciBuilt && process.env.CI !== 'true')(
    'the code interpreter works with public traffic off',
    async () => {
      const ci = await import('@e2b/code-interpreter');
      const sbx = await ci.Sandbox.create({ network: { allowPublicTraffic: false } });
      try {
        expect(sbx.trafficAccessToken).toBeTruthy();
        expect((await sbx.runCode('6*7')).text).toBe('42');
        const context = await sbx.createCodeContext();
        expect((await sbx.runCode('x = 3; x', { context })).text).toBe('3');
      } finally {
        await sbx.kill();
      }
    },
  );

  it('maskRequestHost rewrites the Host the server sees; httpsPorts reach a TLS server; loopback-only servers stay unreachable', async () => {
    const sbx = await create({
      network: { maskRequestHost: 'custom-host.example.com:${PORT}', httpsPorts: [8443] },
    });
    await serve(sbx, 8080, HEADERS_SERVER(8080));
    expect(await (await viaGateway(sbx, 8080)).json()).toEqual({ host: 'custom-host.example.com:8080' });

    await sbx.files.write('/tmp/cert.pem', net.cert);
    await sbx.files.write('/tmp/key.pem', net.key);
    await serve(
      sbx,
      8443,
      HEADERS_SERVER(8443)
        .replace(
          'http.server.ThreadingHTTPServer(',
          "import ssl\nctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain('/tmp/cert.pem', '/tmp/key.pem')\ns = http.server.ThreadingHTTPServer(",
        )
        .replace(
          '.serve_forever()',
          '\ns.socket = ctx.wrap_socket(s.socket, server_side=True); s.serve_forever()',
        ),
    );
    const tls = await viaGateway(sbx, 8443);
    expect([tls.status, await tls.json()]).toEqual([200, { host: 'custom-host.example.com:8443' }]);

    await serve(sbx, 8081, HEADERS_SERVER(8081, '127.0.0.1'));
    const loopback = await viaGateway(sbx, 8081);
    expect([loopback.status, ((await loopback.json()) as { message: string }).message]).toEqual([
      502,
      'The sandbox is running but port is not open',
    ]);
  });

  it('a pause to disk and its resume keep the rules (the namespace is made again)', async () => {
    const sbx = await create({ network: { denyOut: [net.hosts.other] } });
    await refused(sbx, `http://${net.hosts.other}/`);
    await sbx.pause({ keepMemory: false });
    const again = await e2b.Sandbox.connect(sbx.sandboxId);
    await refused(again, `http://${net.hosts.other}/`);
    await reached(again, `http://${net.hosts.web}/`);
  });

  it('kill removes the rules; a restart re-applies them to the sandboxes it adopts', async () => {
    const chains = () => execFileSync('nft', ['list', 'table', 'inet', cove.config.instance]).toString();
    const kept = await create({ network: { denyOut: [net.hosts.other] } });
    const gone = await create({ allowInternetAccess: false });
    const before = (chains().match(/chain egress-\d+/g) ?? []).length;
    await gone.kill(); // answered once it is unreachable; its rules go with the teardown after
    await vi.waitFor(() => expect((chains().match(/chain egress-\d+/g) ?? []).length).toBe(before - 1), {
      timeout: 20_000,
      interval: 100,
    });

    cove = await world.restart();
    const again = await e2b.Sandbox.connect(kept.sandboxId);
    await refused(again, `http://${net.hosts.other}/`);
    await reached(again, `http://${net.hosts.web}/`);
  });
});
