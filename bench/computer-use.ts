// `node bench/computer-use.ts` (or `npm run bench -- --only computer-use`): how fast the
// `desktop` and `browser` templates start and what an idle one costs (issue 11), against a
// Cove the bench starts with its pools off:
//   1. @e2b/desktop's Sandbox.create() (Xvfb and XFCE started by the SDK) → first screenshot;
//   2. e2b's Sandbox.create('browser') → playwright-core connectOverCDP through the port proxy
//      → a page loaded (a data: URL: nothing leaves the machine);
//   3. step 2 again on a Cove with a warm pool of one browser sandbox;
//   4. the memory of each kind of sandbox, idle, as Cove's metrics report it (cgroup memory).
// The SDKs run in this process. Needs root and both templates (`bash scripts/setup.sh desktop
// browser`). docs/computer-use.md holds the last result.
import { parseArgs } from 'node:util';
import { coveBench, type CoveBench } from './cove.ts';
import { describeMachine } from './machine.ts';
import { since, summarize } from './stats.ts';
import { markdownTable, ms } from './table.ts';

const IDLE_MS = 15_000; // metrics are sampled every 5 s: three samples of an idle sandbox

export async function computerUseMain(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { runs: { type: 'string' }, 'templates-home': { type: 'string' } },
  });
  const runs = Number(values.runs ?? process.env.BENCH_CU_RUNS ?? 5);
  const start = async (pool: boolean) => {
    const c = await coveBench({
      templatesHome: values['templates-home'] ?? process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
      subnet16: process.env.BENCH_SUBNET ?? '10.13',
      pool,
    });
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = c.url;
    process.env.E2B_API_KEY = c.apiKey;
    return c;
  };
  const stop = async (c: CoveBench) => {
    const leaks = await c.close();
    if (leaks.length > 0) process.stderr.write(`computer-use: left on the host: ${leaks.join(', ')}\n`);
  };
  let cove = await start(false);
  const [{ Sandbox: Desktop }, { Sandbox }, { chromium }] = await Promise.all([
    import('@e2b/desktop'),
    import('e2b'),
    import('playwright-core'),
  ]);
  const gateway = (id: string) => ({ 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': '9222' });
  const screenshot: number[] = [];
  const pageLoad: number[] = [];
  const pooledPageLoad: number[] = [];
  const memory: { desktop: number[]; browser: number[] } = { desktop: [], browser: [] };
  const idleMiB = async (sbx: { getMetrics: () => Promise<{ memUsed: number }[]> }) => {
    await new Promise((r) => setTimeout(r, IDLE_MS));
    const m = await sbx.getMetrics();
    return (m.at(-1)?.memUsed ?? Number.NaN) / 2 ** 20;
  };
  /** create('browser') → connectOverCDP → a page loaded, timed into `into`; then idle memory. */
  async function browserSample(into: number[], mem?: number[]): Promise<void> {
    const start = performance.now();
    const b = await Sandbox.create('browser', { timeoutMs: 300_000 });
    try {
      const browser = await chromium.connectOverCDP(cove.url, { headers: gateway(b.sandboxId) });
      const page = await browser.contexts()[0]!.newPage();
      await page.goto('data:text/html,<title>x</title><p>loaded</p>');
      into.push(since(start));
      await browser.close();
      if (mem) mem.push(await idleMiB(b));
    } finally {
      await b.kill();
    }
  }
  try {
    for (let i = 0; i <= runs; i++) {
      // The first of each is a warm-up (page cache of the template), not counted.
      const t0 = performance.now();
      const d = await Desktop.create({ timeoutMs: 300_000 });
      try {
        await d.screenshot();
        if (i > 0) screenshot.push(since(t0));
        if (i === 1) memory.desktop.push(await idleMiB(d));
      } finally {
        await d.kill();
      }
      await browserSample(i > 0 ? pageLoad : [], i === 1 ? memory.browser : undefined);
      process.stderr.write(`computer-use: run ${i}/${runs}\n`);
    }
  } finally {
    await stop(cove);
  }
  // The same Cove with a warm pool of one browser sandbox (Chromium started before the claim).
  Object.assign(process.env, {
    COVE_POOL_TEMPLATES: 'browser',
    COVE_POOL_MIN: '1',
    COVE_POOL_MAX: '1',
    COVE_POOL_BUDGET: '1',
  });
  cove = await start(true);
  try {
    for (let i = 0; i <= runs; i++) {
      await cove.manager.pool.settled();
      await browserSample(i > 0 ? pooledPageLoad : []);
    }
    process.stderr.write(`computer-use: pool claims ${JSON.stringify(cove.claims())}\n`);
  } finally {
    await stop(cove);
  }
  const rows = [
    ['desktop: create → first screenshot (@e2b/desktop)', summarize(screenshot)],
    ['browser: create → first page over CDP (playwright-core)', summarize(pageLoad)],
    ['browser, from a warm pool: create → first page over CDP', summarize(pooledPageLoad)],
  ] as const;
  const machine = await describeMachine(process.cwd());
  console.log(
    `computer use, ${new Date().toISOString().slice(0, 10)}, ${machine.cores} cores ${machine.cpuModel}, ` +
      `${machine.memoryGiB} GiB, commit ${machine.commit}\n`,
  );
  console.log(
    markdownTable(
      ['scenario', 'runs', 'p50 ms', 'p90 ms', 'max ms'],
      rows.map(([name, s]) => [name, String(s.n), ms(s.p50), ms(s.p90), ms(s.max)]),
      1,
    ),
  );
  console.log(
    `\nidle memory (cgroup, after ${IDLE_MS / 1000} s): desktop ${memory.desktop[0]?.toFixed(0)} MiB, ` +
      `browser ${memory.browser[0]?.toFixed(0)} MiB`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) await computerUseMain(process.argv.slice(2));
