import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Config } from '../src/config/config.ts';
import { pointSdkAt, startTestCove, stopTestCove, testConfig } from './helpers.ts';

/**
 * A stand-in "internet" for egress tests, so that no test packet can leave the machine even
 * when a policy under test is broken:
 * - a network namespace `inet-<instance>` (not `<instance>-…`: reconcile would take that for
 *   a sandbox's) joined to the host by a veth;
 * - test hosts inside it, serving HTTP and HTTPS (a test CA made here with openssl) and DNS for
 *   the `*.test` names below, and nothing else: it has no route onwards, so whatever else
 *   enters it is dropped there;
 * - on the host, a policy routing rule that sends everything the instance's bridge forwards
 *   (every sandbox's egress) into it instead of the real uplink, routes for the test addresses
 *   so that the egress proxy and DNS relay (host processes) reach them too, and a guard that
 *   drops (and counts, `leaked()`) whatever the bridge forwards anywhere else.
 * Each instance has its own addresses, routing table and link (`internetAddresses`), so that
 * two test runs of different instances on one host never take each other's routes.
 */
export interface FakeInternet {
  /** HTTP and HTTPS hosts; `web` answers for allowed.test, `other` for denied.test. */
  hosts: { web: string; other: string; far: string; dns: string; metadata: string };
  /** The two /24s the hosts are in (`near`: web, other, dns; `far`: far). */
  nets: { near: string; far: string };
  names: Record<string, string>;
  /** The test CA (PEM): sandboxes pass it to curl with --cacert. */
  ca: string;
  /** The namespace the test hosts live in (`ip -n <namespace>` adds more). */
  namespace: string;
  /** The certificate and key the servers present (also usable by a server in a sandbox). */
  cert: string;
  key: string;
  /** Packets the instance's bridge forwarded anywhere but into the namespace (dropped): 0. */
  leaked(): number;
  close(): void;
}

/**
 * The stand-in internet of the test instance with this /16 (`10.N`): hosts in the benchmarking
 * range 198.18.0.0/15 (public for Cove's checks, never routed on the internet), in 198.18.N/24
 * ("near") and 198.19.N/24 ("far", the veth link at its top), routing table 43000+N
 * and rule priority 4100+N.
 * Subnets are unique among an host's running instances (Cove refuses an overlap), so these are too.
 */
export function internetAddresses(subnet16 = process.env.COVE_TEST_SUBNET ?? '10.12') {
  const n = Number(subnet16.split('.')[1]);
  if (!Number.isInteger(n) || n < 0 || n > 255) throw new Error(`not a /16 prefix: ${subnet16}`);
  const near = `198.18.${n}`;
  const far = `198.19.${n}`;
  return {
    hosts: {
      web: `${near}.10`,
      other: `${near}.20`,
      far: `${far}.10`,
      dns: `${near}.53`,
      // a cloud metadata endpoint: answers, so that only Cove's firewall can keep a sandbox from it
      metadata: '169.254.169.254',
    },
    nets: { near: `${near}.0/24`, far: `${far}.0/24` },
    /** Another address in the near /24 (for a test's own servers). */
    near: (last: number) => `${near}.${last}`,
    link: { host: `${far}.253`, ns: `${far}.254` },
    table: String(43000 + n),
    // before the main table's rule (32766), or the main table's routes would win
    priority: String(4100 + n),
  };
}
const { hosts, nets, link, table: TABLE, priority: PRIORITY } = internetAddresses();
const names: Record<string, string> = {
  'allowed.test': hosts.web,
  'api.allowed.test': hosts.web,
  'www.other.test': hosts.far,
  'denied.test': hosts.other,
  // an allowed name must never lead to the host or a private network
  'loopback.test': '127.0.0.1',
};
const LINK_HOST = link.host;
const LINK_NS = link.ns;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
const quiet = (f: () => unknown) => {
  try {
    f();
  } catch {
    // already gone
  }
};

export async function startFakeInternet(opts: { instance: string; bridge: string }): Promise<FakeInternet> {
  const ns = `inet-${opts.instance}`;
  const veth = `vi-${opts.instance}`;
  const guard = `inet-${opts.instance}`;
  const undo = () => {
    quiet(() => execFileSync('nft', ['delete', 'table', 'inet', guard], { stdio: 'ignore' }));
    quiet(() => ip('rule', 'del', 'iif', opts.bridge, 'lookup', TABLE));
    quiet(() => ip('route', 'flush', 'table', TABLE));
    for (const net of Object.values(nets)) quiet(() => ip('route', 'del', net, 'via', LINK_NS));
    quiet(() => ip('link', 'del', veth));
    quiet(() => ip('netns', 'del', ns));
  };
  undo(); // what an interrupted earlier run left

  const dir = mkdtempSync(join(tmpdir(), 'cove-inet-'));
  makeCertificates(dir);

  ip('netns', 'add', ns);
  ip('link', 'add', veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
  ip('addr', 'add', `${LINK_HOST}/30`, 'dev', veth);
  ip('link', 'set', veth, 'up');
  ip('-n', ns, 'link', 'set', 'lo', 'up');
  ip('-n', ns, 'addr', 'add', `${LINK_NS}/30`, 'dev', 'eth0');
  ip('-n', ns, 'link', 'set', 'eth0', 'up');
  for (const a of Object.values(hosts)) ip('-n', ns, 'addr', 'add', `${a}/32`, 'dev', 'lo');
  // Forwarded sandbox traffic: into the namespace, whatever its destination. Locally made
  // packets (the gateway's, the egress proxy's) keep the main table, where only the test
  // addresses lead here.
  ip('route', 'replace', 'default', 'via', LINK_NS, 'dev', veth, 'table', TABLE);
  ip('rule', 'add', 'iif', opts.bridge, 'lookup', TABLE, 'priority', PRIORITY);
  for (const net of Object.values(nets)) ip('route', 'replace', net, 'via', LINK_NS, 'dev', veth);
  // Should the rule above ever miss a packet, it still does not leave: counted, then dropped.
  const nft = [
    `table inet ${guard} {`,
    '  chain leaks {',
    '    type filter hook postrouting priority 0; policy accept;',
    `    iifname "${opts.bridge}" oifname != { "${veth}", "${opts.bridge}" } counter drop`,
    '  }',
    '}',
  ].join('\n');
  execFileSync('nft', ['-f', '-'], { input: nft, stdio: ['pipe', 'ignore', 'pipe'] });

  const node = join(import.meta.dirname, '..', 'node_modules', '.bin', 'node');
  const server: ChildProcess = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      node,
      join(import.meta.dirname, 'netns-internet-server.ts'),
      dir,
      hosts.dns,
      JSON.stringify(names),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`the fake internet's servers exited (${code})`)));
    server.stdout!.once('data', () => resolve());
  });

  return {
    hosts,
    nets,
    names,
    namespace: ns,
    ca: readFileSync(join(dir, 'ca.pem'), 'utf8'),
    cert: readFileSync(join(dir, 'cert.pem'), 'utf8'),
    key: readFileSync(join(dir, 'key.pem'), 'utf8'),
    leaked() {
      const listing = execFileSync('nft', ['list', 'chain', 'inet', guard, 'leaks']).toString();
      return Number(/counter packets (\d+)/.exec(listing)?.[1] ?? NaN);
    },
    close() {
      server.kill('SIGKILL');
      undo();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A CA, and a certificate it signs for every test name and address. */
function makeCertificates(dir: string): void {
  const ssl = (args: string) => execFileSync('openssl', args.split(' '), { cwd: dir, stdio: 'ignore' });
  const newKey = '-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes';
  ssl(`req -x509 ${newKey} -keyout ca-key.pem -out ca.pem -subj /CN=cove-test-CA -days 2`);
  const san = [...Object.keys(names).map((n) => `DNS:${n}`), ...Object.values(hosts).map((a) => `IP:${a}`)];
  writeFileSync(join(dir, 'ext.cnf'), `subjectAltName=${san.join(',')}\n`);
  ssl(`req ${newKey} -keyout key.pem -out csr.pem -subj /CN=fake-internet`);
  ssl(
    'x509 -req -in csr.pem -CA ca.pem -CAkey ca-key.pem -CAcreateserial -out cert.pem -days 2 -extfile ext.cnf',
  );
}

const loadE2b = () => import('e2b');

/** The guard's count, or NaN when it cannot be read (its table gone: nothing proves none left). */
const countLeaks = (net: FakeInternet): number => {
  try {
    return net.leaked();
  } catch {
    return NaN;
  }
};

/** What an egress test runs against: the stand-in internet, a Cove that uses it, the SDK. */
export interface EgressWorld {
  net: FakeInternet;
  cove: Awaited<ReturnType<typeof startTestCove>>;
  e2b: Awaited<ReturnType<typeof loadE2b>>;
  /** Stops Cove, leaving its sandboxes running, and starts it again on the same state (`cove` is the new one). */
  restart(): Promise<EgressWorld['cove']>;
  /** Stops Cove (killing its sandboxes), then the stand-in internet; then fails if the guard
   * counted a packet that would have left the machine (`net.leaked()`), unless `leaks` says why. */
  close(): Promise<void>;
}

/**
 * The egress tests' common start: the stand-in internet, then a Cove whose DNS is its DNS
 * server and whose egress proxy trusts its test CA for intercepted HTTPS (as an operator
 * would a private CA, COVE_EGRESS_TRUST_CA), then the SDK pointed at that Cove. `beforeCove`
 * runs in between, for servers of the test's own inside the namespace. A failed start undoes
 * what it made.
 */
export async function startEgressWorld(
  opts: {
    config?: Partial<Config>;
    beforeCove?: (net: FakeInternet) => Promise<void> | void;
    /** Why this world's guard may count packets (a test that breaks the containment on purpose). */
    leaks?: string;
  } = {},
): Promise<EgressWorld> {
  const dir = mkdtempSync(join(tmpdir(), 'cove-egress-'));
  const config = testConfig({ dns: [hosts.dns], egressTrustCa: join(dir, 'ca.pem'), ...opts.config });
  let net: FakeInternet | undefined;
  let cove: EgressWorld['cove'] | undefined;
  const close = async () => {
    // Read first: the guard's table goes with the stand-in internet.
    const leaked = net && opts.leaks === undefined ? countLeaks(net) : 0;
    try {
      if (cove) await stopTestCove(cove);
    } finally {
      net?.close();
      rmSync(dir, { recursive: true, force: true });
    }
    if (leaked !== 0)
      throw new Error(
        `${leaked} packet(s) from the sandboxes would have left the machine (the guard dropped them)`,
      );
  };
  try {
    net = await startFakeInternet({ instance: config.instance, bridge: `${config.instance}0` });
    writeFileSync(join(dir, 'ca.pem'), net.ca);
    await opts.beforeCove?.(net);
    cove = await startTestCove(config);
    pointSdkAt(cove);
    const world: EgressWorld = {
      net,
      cove,
      e2b: await loadE2b(),
      async restart() {
        await world.cove.close();
        cove = undefined;
        world.cove = cove = await startTestCove(config);
        pointSdkAt(cove);
        return cove;
      },
      close,
    };
    return world;
  } catch (err) {
    await close().catch(() => {});
    throw err;
  }
}
