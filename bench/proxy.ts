// What the port proxy adds to an HTTP request (issue 4's target: under 1 ms at p50). One
// sandbox runs src/gateway/testdata/port-server.js on 8080; the same small GET is sent
// straight to the sandbox's address on the bridge, and through Cove's gateway by headers and
// by `<port>-<id>.localhost` host, each over one keep-alive connection, the three interleaved
// so that drift on the machine touches all alike. Needs root (it runs a real sandbox).
//
//   node bench/proxy.ts [requests=2000]    (COVE_TEST_INSTANCE / COVE_TEST_SUBNET as for tests)
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { startTestCove, stopTestCove } from '../test/helpers.ts';
import { removeScratch } from '../test/scratch-remove.ts';
import { since, summarize, type Summary } from './stats.ts';

// From the command line, or BENCH_PROXY_RUNS when bench/run.ts imports it (argv is run.ts's then).
const fromArgv = Number(process.argv[2]);
const N =
  Number.isInteger(fromArgv) && fromArgv > 0 ? fromArgv : Number(process.env.BENCH_PROXY_RUNS ?? 2000);
const WARMUP = 200;
const PATH = '/cookies'; // 7-byte body, two headers: the cost measured is the hop, not the payload

type Target = { host: string; port: number; headers: Record<string, string>; agent: Agent };

function once(t: Target): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    const req = request(
      { host: t.host, port: t.port, path: PATH, headers: t.headers, agent: t.agent },
      (res) => {
        res.resume();
        res.once('end', () =>
          res.statusCode === 201 ? resolve(since(start)) : reject(new Error(`HTTP ${res.statusCode}`)),
        );
      },
    );
    req.once('error', reject);
    req.end();
  });
}

const cove = await startTestCove();
try {
  process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
  process.env.E2B_API_KEY = cove.apiKey;
  const { Sandbox } = await import('e2b');
  const sbx = await Sandbox.create('base');
  await sbx.files.write(
    '/home/user/port-server.mjs',
    readFileSync(join(import.meta.dirname, '../src/gateway/testdata/port-server.js'), 'utf8'),
  );
  await sbx.commands.run('node /home/user/port-server.mjs 8080', { background: true });

  const coveUrl = new URL(cove.url);
  const agent = () => new Agent({ keepAlive: true, maxSockets: 1 });
  const targets: Record<string, Target> = {
    direct: { host: cove.manager.get(sbx.sandboxId).address, port: 8080, headers: {}, agent: agent() },
    'gateway, headers': {
      host: coveUrl.hostname,
      port: Number(coveUrl.port),
      headers: { 'E2b-Sandbox-Id': sbx.sandboxId, 'E2b-Sandbox-Port': '8080' },
      agent: agent(),
    },
    'gateway, host': {
      host: coveUrl.hostname,
      port: Number(coveUrl.port),
      headers: { Host: sbx.getHost(8080) },
      agent: agent(),
    },
  };
  for (let i = 0; i < 100; i++) {
    if (
      await once(targets.direct!).then(
        () => true,
        () => false,
      )
    )
      break;
    await new Promise((r) => setTimeout(r, 100));
  }

  const samples = Object.fromEntries(Object.keys(targets).map((k) => [k, [] as number[]]));
  for (let i = 0; i < WARMUP + N; i++)
    for (const [name, t] of Object.entries(targets)) {
      const ms = await once(t);
      if (i >= WARMUP) samples[name]!.push(ms);
    }

  const rows: Record<string, Summary> = {};
  for (const [name, s] of Object.entries(samples)) rows[name] = summarize(s);
  const fmt = (x: number) => x.toFixed(3).padStart(7);
  process.stdout.write(
    `proxied GET ${PATH} to a sandbox, ${N} requests each, one keep-alive connection (ms)\n`,
  );
  process.stdout.write(`${''.padEnd(18)}    p50     p90     p99    mean\n`);
  for (const [name, r] of Object.entries(rows))
    process.stdout.write(`${name.padEnd(18)}${fmt(r.p50)} ${fmt(r.p90)} ${fmt(r.p99)} ${fmt(r.mean)}\n`);
  const direct = rows.direct!.p50;
  for (const name of ['gateway, headers', 'gateway, host'])
    process.stdout.write(
      `overhead p50 (${name}): ${(rows[name]!.p50 - direct).toFixed(3)} ms (target < 1 ms)\n`,
    );
  for (const t of Object.values(targets)) t.agent.destroy();
} finally {
  const leftovers = await stopTestCove(cove);
  if (leftovers.length > 0) process.stderr.write(`left behind: ${leftovers.join(', ')}\n`);
  else await removeScratch(cove.config.home); // no vitest here to remove the test home
}
