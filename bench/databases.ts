// `node bench/databases.ts` (or `npm run bench -- --only databases`): agents' databases (issue 14).
//   1. The first database of a fresh Cove home: initdb of Cove's cluster, its start, the create.
//   2. Database create and delete through the API (POST/DELETE /databases), one after another:
//      role + CREATE DATABASE (a copy of template1) + REVOKE; delete is DROP ... WITH (FORCE).
//   3. Sandbox create through the API with `cove-database` metadata beside one without: what
//      the grant (an nft set element) adds.
// BENCH_DB_RUNS (default 30), BENCH_DB_SANDBOXES (default 10). Needs root, postgresql and the
// base template. See docs/benchmarks.md for the last result.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.ts';
import { createLogger } from '../src/core/log.ts';
import { startCove } from '../src/main.ts';
import { createCluster } from '../src/services/databases/cluster.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { describeMachine } from './machine.ts';
import { since, summarize } from './stats.ts';
import { markdownTable, ms } from './table.ts';

export async function databasesMain(): Promise<number> {
  const runs = Number(process.env.BENCH_DB_RUNS ?? 30);
  const sandboxes = Number(process.env.BENCH_DB_SANDBOXES ?? 10);
  const m = await describeMachine(join(import.meta.dirname, '..'));
  console.log(
    `# Databases (issue 14), ${new Date().toISOString()}\n\n${m.host}: ${m.cores} cores (${m.cpuModel}), ` +
      `${m.memoryGiB} GiB, kernel ${m.kernel}, Node ${m.node}, commit ${m.commit}\n`,
  );
  const home = await mkdtemp(join(tmpdir(), 'cove-bench-db-'));
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
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${cove.url}${path}`, {
      method,
      headers: { 'x-api-key': cove.apiKey!, 'content-type': 'application/json' },
      ...(body !== undefined && { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    return res.status === 204 ? undefined : ((await res.json()) as Record<string, string>);
  };
  const rows: string[][] = [];
  try {
    let start = performance.now();
    await api('POST', '/databases', { name: 'first' });
    rows.push(['first create (initdb + server start + create)', '1', ms(since(start)), '', '']);

    const creates: number[] = [];
    const deletes: number[] = [];
    for (let i = 0; i < runs; i++) {
      start = performance.now();
      await api('POST', '/databases', { name: `db${i}` });
      creates.push(since(start));
    }
    for (let i = 0; i < runs; i++) {
      start = performance.now();
      await api('DELETE', `/databases/db${i}`);
      deletes.push(since(start));
    }
    for (const [label, samples] of [
      ['database create', creates],
      ['database delete', deletes],
    ] as const) {
      const s = summarize(samples);
      rows.push([label, String(s.n), ms(s.p50), ms(s.p90), ms(s.p99)]);
    }

    for (const [label, metadata] of [
      ['sandbox create, no database', {}],
      ['sandbox create with a database', { 'cove-database': 'first' }],
    ] as const) {
      const samples: number[] = [];
      for (let i = 0; i < sandboxes; i++) {
        start = performance.now();
        const sbx = await api('POST', '/sandboxes', { templateID: 'base', timeout: 60, metadata });
        samples.push(since(start));
        await api('DELETE', `/sandboxes/${sbx!.sandboxID}`);
      }
      const s = summarize(samples);
      rows.push([label, String(s.n), ms(s.p50), ms(s.p90), ms(s.p99)]);
    }
  } finally {
    await Promise.all(cove.manager.list().map((s) => cove.manager.kill(s.id)));
    await cove.close();
    await createCluster({
      dir: join(home, 'postgres'),
      port: config.databases.port,
      listen: [],
      hba: [],
    }).stop();
    await rm(home, { recursive: true, force: true });
  }
  console.log(markdownTable(['step (through the API)', 'n', 'p50 ms', 'p90 ms', 'p99 ms'], rows, 1));
  return 0;
}

if (import.meta.main) await databasesMain();
