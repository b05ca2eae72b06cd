// `node bench/services.ts` (or `npm run bench -- --only services`): runtime services (issue 14).
//   1. Gateway overhead: the same chat completion (JSON, and streamed to its last byte) sent
//      to the loopback stand-in provider directly, through Cove's port (API key) and through
//      the sandboxes' listener on the bridge address (a sandbox token); one keep-alive client
//      in this process, calls one after another. Overhead = gateway p50/p99 − direct p50/p99.
//   2. Memory recall over N entries (100 000) in one namespace: full text (FTS5 BM25) alone,
//      and fused with 64-dimension vectors, in process on a file database. Entries are 12
//      words: 4 of 70 common words, 8 of 20 000 rare ones; queries 2 common + 2 rare words.
// Needs root and the base template for (1). See docs/benchmarks.md for the last result.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { loadConfig } from '../src/config/config.ts';
import { createLogger } from '../src/core/log.ts';
import { startCove } from '../src/main.ts';
import { openServicesDb } from '../src/services/db.ts';
import { createMemory } from '../src/services/memory/store.ts';
import { embed, startStandIn, standInConfig } from '../test/services-stand-in.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { since, summarize, type Summary } from './stats.ts';
import { markdownTable, ms } from './table.ts';

const WORDS = (
  'alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa ' +
  'quebec romeo sierra tango uniform victor whiskey xray yankee zulu server deploy backup user prefers ' +
  'database password rotates nightly staging editor theme reactor coolant invoice customer ticket ' +
  'meeting agenda budget forecast release branch merge conflict kernel module network bridge sandbox'
).split(' ');

/** 20 000 made-up words (`k3f9`-like): with the common words above, a vocabulary where some
 * words are in a quarter of the entries and most in a few dozen, as in real notes. */
const RARE = Array.from({ length: 20_000 }, (_, i) => `w${(i * 7919).toString(36)}`);

function sentence(i: number): string {
  // deterministic pseudo-random words (mulberry32 seeded by i): 4 common, 8 rare
  let x = i + 0x9e3779b9;
  const next = () => {
    x = (x + 0x6d2b79f5) | 0;
    let t = Math.imul(x ^ (x >>> 15), 1 | x);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (t ^ (t >>> 14)) >>> 0;
  };
  const out: string[] = [];
  for (let k = 0; k < 12; k++) out.push(k < 4 ? WORDS[next() % WORDS.length]! : RARE[next() % RARE.length]!);
  return `${out.join(' ')} #${i}`;
}

async function timeCalls(n: number, call: () => Promise<void>): Promise<Summary> {
  for (let i = 0; i < Math.min(20, n); i++) await call(); // warm-up: connections, JIT
  const samples: number[] = [];
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    await call();
    samples.push(since(start));
  }
  return summarize(samples);
}

async function gatewayBench(runs: number): Promise<string[][]> {
  const standIn = await startStandIn();
  const home = await mkdtemp(join(tmpdir(), 'cove-bench-services-'));
  await writeFile(join(home, 'services.json'), JSON.stringify({ ...standInConfig(standIn.url), quotas: {} }));
  const config = {
    ...loadConfig({
      home,
      templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
      instance: BENCH_INSTANCE,
      subnet16: process.env.BENCH_SUBNET ?? '10.13',
      port: 0,
      logLevel: process.env.COVE_LOG_LEVEL ?? 'warn',
    }),
    pool: { min: 0, max: 0, budget: 0, templates: [], idleShrinkMs: 60_000 },
  };
  const cove = await startCove(config, { log: createLogger(config.logLevel) });
  const rows: string[][] = [];
  try {
    const apiKey = cove.apiKey!;
    const res = await fetch(`${cove.url}/sandboxes`, {
      method: 'POST',
      headers: { 'x-api-key': apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ templateID: 'base', timeout: 600 }),
    });
    const { sandboxID } = (await res.json()) as { sandboxID: string };
    const env = cove.manager.envVars(sandboxID);
    const targets = {
      direct: { url: `${standIn.url}/openai/v1`, key: 'sk-upstream-secret-0123456789' },
      "Cove's port": { url: `${cove.url}/v1`, key: apiKey },
      'sandbox listener': { url: env.OPENAI_BASE_URL!, key: env.OPENAI_API_KEY! },
    };
    const results: Record<string, Record<string, Summary>> = {};
    for (const stream of [false, true]) {
      const body = JSON.stringify({ model: 'gpt-test', stream, messages: [{ role: 'user', content: 'hi' }] });
      const kind = stream ? 'streamed, to the last byte' : 'JSON';
      results[kind] = {};
      for (const [name, t] of Object.entries(targets)) {
        results[kind][name] = await timeCalls(runs, async () => {
          const r = await fetch(`${t.url}/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${t.key}`, 'content-type': 'application/json' },
            body,
          });
          if (r.status !== 200) throw new Error(`${name}: HTTP ${r.status} ${await r.text()}`);
          await r.arrayBuffer();
        });
      }
      const direct = results[kind].direct!;
      for (const [name, s] of Object.entries(results[kind])) {
        const over = name === 'direct' ? ['', ''] : [ms(s.p50 - direct.p50), ms(s.p99 - direct.p99)];
        rows.push([kind, name, String(s.n), ms(s.p50), ms(s.p90), ms(s.p99), ...over]);
      }
    }
    await cove.manager.kill(sandboxID);
  } finally {
    await cove.close();
    await standIn.close();
    await rm(home, { recursive: true, force: true });
  }
  return rows;
}

async function recallBench(entries: number, queries: number): Promise<string[][]> {
  const rows: string[][] = [];
  for (const vectors of [false, true]) {
    const dir = await mkdtemp(join(tmpdir(), 'cove-bench-memory-'));
    const db = openServicesDb(join(dir, 'services.db'));
    const memory = createMemory(db, {
      capacity: entries * 2,
      decayDays: 365,
      ...(vectors && {
        embed: (texts: string[]) => Promise.resolve(texts.map((t) => Float32Array.from(embed(t)))),
      }),
    });
    const scope = { keyId: 'key_bench', namespace: 'bench' };
    const fillStart = performance.now();
    for (let i = 0; i < entries; i += 1000) {
      const batch = Array.from({ length: Math.min(1000, entries - i) }, (_, k) => ({
        text: sentence(i + k),
      }));
      await memory.add(scope, batch);
    }
    const fillMs = since(fillStart);
    let q = 0;
    const s = await timeCalls(queries, async () => {
      // a query of 2 common and 2 rare words, as a sentence with stop words around them
      const words = sentence(entries + q++)
        .split(' ')
        .slice(2, 6)
        .join(' ');
      const r = await memory.recall(scope, { query: `which ${words}?`, limit: 10 });
      if (r.length === 0) throw new Error('recall found nothing');
    });
    rows.push([
      vectors ? 'FTS5 BM25 + 64-dim vectors (RRF)' : 'FTS5 BM25',
      String(entries),
      String(s.n),
      ms(s.p50),
      ms(s.p90),
      ms(s.p99),
      `${(fillMs / 1000).toFixed(1)} s`,
    ]);
    db.close();
    await rm(dir, { recursive: true, force: true });
  }
  return rows;
}

export async function servicesMain(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      runs: { type: 'string' },
      entries: { type: 'string' },
      queries: { type: 'string' },
      quick: { type: 'boolean' },
    },
  });
  const quick = values.quick ?? process.env.BENCH_QUICK === '1';
  const runs = Number(values.runs ?? process.env.BENCH_SVC_RUNS ?? (quick ? 100 : 500));
  const entries = Number(values.entries ?? process.env.BENCH_SVC_ENTRIES ?? (quick ? 10_000 : 100_000));
  const queries = Number(values.queries ?? process.env.BENCH_SVC_QUERIES ?? (quick ? 50 : 200));
  const m = await describeMachine(join(import.meta.dirname, '..'));
  console.log(
    `# Runtime services (issue 14), ${new Date().toISOString()}\n\n${m.host}: ${m.cores} cores (${m.cpuModel}), ` +
      `${m.memoryGiB} GiB, kernel ${m.kernel}, Node ${m.node}, commit ${m.commit}\n`,
  );
  const gateway = await gatewayBench(runs);
  console.log(
    markdownTable(
      ['call', 'path', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'overhead p50 ms', 'overhead p99 ms'],
      gateway,
      2,
    ),
  );
  console.log();
  const recall = await recallBench(entries, queries);
  console.log(markdownTable(['recall', 'entries', 'n', 'p50 ms', 'p90 ms', 'p99 ms', 'fill'], recall, 1));
  return 0;
}

if (import.meta.main) await servicesMain(process.argv.slice(2));
