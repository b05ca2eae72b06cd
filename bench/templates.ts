// Template builds (issue 9): `npm run bench -- --only templates`, or `node bench/templates.ts`.
//   1. a 5-step template from base built cold (a nonce in its first step: nothing cached),
//   2. the same again (every step cached), 3. with its last step changed,
//   4. Sandbox.create + first command from a 20-step template against base (cold, no pool).
// Through the unmodified e2b SDK, in process, against a Cove of the bench's instance.
import { randomBytes } from 'node:crypto';
import { coveBench } from './cove.ts';
import { BENCH_INSTANCE } from './instance.ts';
import { summarize } from './stats.ts';
import { markdownTable, ms } from './table.ts';

/** Resolves to the exit status: 1 when the run left something on the host. */
export async function templatesMain(): Promise<number> {
  const n = Number(process.env.BENCH_TEMPLATES_N ?? 20);
  const cove = await coveBench({
    templatesHome: process.env.COVE_TEMPLATES_HOME ?? '/var/lib/cove',
    subnet16: process.env.BENCH_SUBNET ?? '10.13',
    pool: false,
  });
  process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
  process.env.E2B_API_KEY = cove.apiKey;
  const { Template, Sandbox } = await import('e2b');
  const nonce = randomBytes(4).toString('hex');
  const names: string[] = [];
  let left: string[] | undefined;
  const timed = async (f: () => Promise<unknown>) => {
    const t0 = performance.now();
    await f();
    return performance.now() - t0;
  };
  try {
    const five = (last: string) =>
      Template()
        .fromTemplate('base')
        .runCmd(`echo ${nonce} > /opt/nonce`, { user: 'root' })
        .setEnvs({ MODE: 'bench' })
        .setWorkdir('/opt/app')
        .runCmd('python3 -c "print(42)" > answer.txt', { user: 'root' })
        .runCmd(last, { user: 'root' });
    const name5 = `bench-five-${nonce}`;
    names.push(name5);
    const cold = await timed(() => Template.build(five('echo a > last.txt'), name5));
    const cached = await timed(() => Template.build(five('echo a > last.txt'), name5));
    const lastChanged = await timed(() => Template.build(five('echo b > last.txt'), name5));

    let twenty = Template().fromTemplate('base').runCmd(`echo ${nonce} > /opt/nonce`, { user: 'root' });
    for (let i = 2; i <= 20; i++) twenty = twenty.runCmd(`echo ${i} > /opt/step-${i}`, { user: 'root' });
    const name20 = `bench-twenty-${nonce}`;
    names.push(name20);
    const build20 = await timed(() => Template.build(twenty, name20));

    const createRun = async (template: string) => {
      const samples: number[] = [];
      for (let i = 0; i < n; i++) {
        let sbx: InstanceType<typeof Sandbox> | undefined;
        samples.push(
          await timed(async () => {
            sbx = await Sandbox.create(template);
            await sbx.commands.run('true');
          }),
        );
        await sbx?.kill();
      }
      return summarize(samples);
    };
    // Interleaved halves, so that a load change on the host hits both alike.
    const base1 = await createRun('base');
    const t1 = await createRun(name20);
    const base2 = await createRun('base');
    const t2 = await createRun(name20);
    const base = (base1.p50 + base2.p50) / 2;
    const tpl = (t1.p50 + t2.p50) / 2;

    process.stdout.write(
      `\n### Template builds (instance ${BENCH_INSTANCE}, ${new Date().toISOString()})\n\n` +
        markdownTable(
          ['what', 'ms'],
          [
            ['5-step template from base, cold', ms(cold)],
            ['the same, every step cached', ms(cached)],
            ['the same, last step changed', ms(lastChanged)],
            ['20-step template from base, cold', ms(build20)],
          ],
          1,
        ) +
        '\n\n' +
        markdownTable(
          ['Sandbox.create + first command (e2b SDK, no pool)', 'p50 ms', 'runs'],
          [
            ['base', ms(base), String(2 * n)],
            ['20-step template', ms(tpl), String(2 * n)],
            ['ratio (target ≈ 1)', `${(tpl / base).toFixed(2)}×`, ''],
          ],
          1,
        ) +
        '\n',
    );
  } finally {
    for (const name of names)
      await fetch(`${cove.url}/templates/${name}`, {
        method: 'DELETE',
        headers: { 'X-API-Key': cove.apiKey },
      });
    left = await cove.close();
    if (left.length > 0) process.stderr.write(`left behind: ${left.join(', ')}\n`);
  }
  return left?.length ? 1 : 0;
}

if (import.meta.main) process.exitCode = await templatesMain();
