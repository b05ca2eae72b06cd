// `node bench/uploads.ts [--ops 12] [--mib 64]`: the SDK's two upload modes, op by op.
// files.write (multipart/form-data, the SDK's default) and files.write(…, {useOctetStream})
// alternate (ABBA) against one Cove, so that the machine's load and the server's GC debt fall
// on both alike; each op's server CPU (all threads, and the event loop's alone) and the SDK's
// MB/s are recorded, and medians printed. hot-path.ts runs the two as separate phases, one
// after the other; this is the A/B of the two modes (src/envd/files/README.md).
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { coveBench } from './cove.ts';
import { e2bSubject } from './e2b.ts';
import { percentile } from './stats.ts';

interface Sample {
  ms: number;
  cpu: number;
  main: number;
}

const median = (v: number[]): number =>
  percentile(
    [...v].sort((a, b) => a - b),
    50,
  );

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { ops: { type: 'string', default: '12' }, mib: { type: 'string', default: '64' } },
  });
  const ops = Number(values.ops);
  const bytes = Number(values.mib) * 2 ** 20;
  const scratch = await mkdtemp(join(tmpdir(), 'coveb-uploads-'));
  const file = join(scratch, 'file.bin');
  await writeFile(file, randomBytes(bytes));
  const cove = await coveBench({
    templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    subnet16: process.env.BENCH_SUBNET ?? '10.13',
    pool: false,
  });
  const sdk = e2bSubject({ url: cove.url, apiKey: cove.apiKey, manager: cove.manager, file, scratch });
  const got: Record<'multipart' | 'octet', Sample[]> = { multipart: [], octet: [] };
  const loads: number[] = [];
  try {
    const t = sdk.transfer;
    if (!sdk.startLong || !t?.writeOctet) throw new Error('e2b subject lacks an operation');
    await sdk.startLong();
    const modes = { multipart: () => t.write(), octet: () => t.writeOctet!() };
    for (const m of ['multipart', 'octet', 'multipart', 'octet'] as const) await modes[m](); // warm-up
    for (let i = 0; i < ops; i++) {
      const order = i % 2 === 0 ? (['multipart', 'octet'] as const) : (['octet', 'multipart'] as const);
      for (const m of order) {
        const cpu0 = process.cpuUsage();
        const main0 = process.threadCpuUsage();
        const ms = await modes[m]();
        const cpu = process.cpuUsage(cpu0);
        const mainUsed = process.threadCpuUsage(main0);
        got[m].push({
          ms,
          cpu: (cpu.user + cpu.system) / 1000,
          main: (mainUsed.user + mainUsed.system) / 1000,
        });
      }
      loads.push(loadavg()[0] ?? 0);
    }
  } finally {
    await sdk.cleanup();
    const left = await cove.close();
    await rm(scratch, { recursive: true, force: true });
    if (left.length) console.error(`uploads: LEFT BEHIND: ${left.join(', ')}`);
  }
  console.log(
    `${new Date().toISOString()} ${values.mib} MiB, n=${ops} each, load ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)}`,
  );
  console.log('| upload | MB/s p50 | server CPU ms p50, all threads (event loop) |');
  console.log('| --- | --: | --: |');
  for (const [m, s] of Object.entries(got)) {
    const mbs = bytes / 1e6 / (median(s.map((x) => x.ms)) / 1000);
    console.log(
      `| ${m} | ${mbs.toFixed(0)} | ${median(s.map((x) => x.cpu)).toFixed(0)} (${median(s.map((x) => x.main)).toFixed(0)}) |`,
    );
  }
}

if (import.meta.main) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    console.error('uploads:', err);
    process.exit(1);
  });
}
