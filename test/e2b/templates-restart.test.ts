import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { Template } from 'e2b';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A build that is running when Cove stops is failed with a reason, never left building. */
describe.skipIf(!canRunSandboxes)('a template build across a Cove restart', () => {
  let cove: (Cove & { config: Config; apiKey: string }) | undefined;
  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const point = (c: Cove & { apiKey: string }) => {
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = c.url;
    process.env.E2B_API_KEY = c.apiKey;
  };

  it('marks the build failed with a reason and leaves no build sandbox behind', async () => {
    const config = testConfig();
    cove = await startTestCove(config);
    point(cove);
    const name = `cove-restart-${randomBytes(4).toString('hex')}`;
    const t = Template().fromTemplate('base').runCmd(`sleep 600 # ${name}`);
    const info = await Template.buildInBackground(t, name);
    for (;;) {
      const s = await Template.getBuildStatus(info);
      if (s.logEntries.some((e) => e.message.includes('[1/1] RUN sleep'))) break;
      expect(s.status).toMatch(/building|waiting/);
      await wait(100);
    }
    await wait(500); // the step's sandbox is up and running the sleep
    expect(await stopTestCove(cove)).toEqual([]);

    cove = await startTestCove(config);
    point(cove);
    const after = await Template.getBuildStatus(info);
    expect(after.status).toBe('error');
    expect(after.reason?.message).toMatch(/Cove stopped while this build was running/);
    expect(await Template.exists(name)).toBe(false);
  });
});
