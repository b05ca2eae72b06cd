import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, sh, startTestCove, stopTestCove, testConfig, pointSdkAt } from './helpers.ts';
import { sandboxPsql, stopDatabaseServer } from './sandbox-psql.ts';
import { OPENAI_SECRET, standInConfig, startStandIn, type StandIn } from './services-stand-in.ts';

const loadE2b = () => import('e2b');

/** The script docs/runtime-services.md shows, after its `<!-- agent-script -->` marker. */
function documentedScript(): string {
  const doc = readFileSync(join(import.meta.dirname, '..', 'docs', 'runtime-services.md'), 'utf8');
  const block = /<!-- agent-script -->\s*```sh\n([\s\S]*?)```/.exec(doc)?.[1];
  if (!block) throw new Error('docs/runtime-services.md has no agent script');
  return block;
}

/**
 * Issue 14's "done when": an agent in a sandbox calls a model, remembers and uses its
 * database, with no key in the sandbox, by running the very script the docs show (curl and
 * psql: the host's psql is copied into the base template, which has none), against a stand-in
 * provider on loopback.
 */
describe.skipIf(!canRunSandboxes)('an agent in a sandbox', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let standIn: StandIn;

  beforeAll(async () => {
    standIn = await startStandIn();
    const config = testConfig();
    writeFileSync(join(config.home, 'services.json'), JSON.stringify(standInConfig(standIn.url)));
    cove = await startTestCove(config);
    pointSdkAt(cove);
  });

  afterAll(async () => {
    if (cove) {
      expect(await stopTestCove(cove)).toEqual([]);
      await stopDatabaseServer(cove.config);
    }
    await standIn?.close();
  });

  it('calls a model, remembers and uses its database, holding no provider key', async () => {
    const made = await fetch(`${cove.url}/databases`, {
      method: 'POST',
      headers: { 'x-api-key': cove.apiKey, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'notes' }),
    });
    expect(made.status).toBe(201);
    const { Sandbox } = await loadE2b();
    const sbx = await Sandbox.create('base', { metadata: { 'cove-database': 'notes' } });
    await sandboxPsql(() => cove.manager).install(sbx);
    await sbx.files.write('/home/user/agent.sh', documentedScript());

    const run = await sh(
      cove.manager,
      sbx.sandboxId,
      'export PATH=/tmp/pg:$PATH LD_LIBRARY_PATH=/tmp/pg; bash -eo pipefail /home/user/agent.sh',
    );
    expect(run.stderr).toBe('');
    const [recall, rows] = run.stdout.trim().split('\n');
    expect(JSON.parse(recall!)).toMatchObject({
      results: [{ text: 'The model greeted the user with: Hello from stand-in' }],
    });
    expect(rows).toBe('Hello from stand-in');

    // the provider saw Cove's key; the sandbox has none of it, only its own token
    const call = standIn.requests.find((r) => r.path.endsWith('/chat/completions'));
    expect(call?.headers.authorization).toBe(`Bearer ${OPENAI_SECRET}`);
    const env = (await sh(cove.manager, sbx.sandboxId, 'env')).stdout;
    expect(env).not.toContain(OPENAI_SECRET);
    expect(env).toMatch(/^OPENAI_API_KEY=cst_/m);
    expect(env).toMatch(/^DATABASE_URL=postgresql:\/\/db_[a-z0-9]{20}:/m);
    await sbx.kill();
  });
});
