import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from './helpers.ts';

describe.skipIf(!canRunSandboxes)('admission of sandbox creates', () => {
  let cove: Cove & { config: Config };

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ builds: { concurrency: 1, queue: 0 } }));
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  const create = () =>
    fetch(`${cove.url}/v2/sandboxes`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': cove.apiKey },
      body: JSON.stringify({ templateID: 'base', timeout: 60 }),
    });

  it('answers 429 with Retry-After beyond its queue, and loses nothing', async () => {
    const replies = await Promise.all([create(), create(), create()]);
    const statuses = replies.map((r) => r.status).sort();
    expect(statuses[0]).toBe(201);
    expect(statuses).toContain(429);
    const refused = replies.find((r) => r.status === 429)!;
    expect(refused.headers.get('retry-after')).toBe('1');
    const body = (await refused.json()) as { code: number; message: string };
    expect(body.code).toBe(429);
    expect(body.message).toMatch(/retry/);
    expect(cove.manager.list()).toHaveLength(statuses.filter((s) => s === 201).length);
  });

  it('is retried by the e2b SDK until it gets through', async () => {
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    const { Sandbox } = await import('e2b');
    const sandboxes = await Promise.all([
      Sandbox.create('base'),
      Sandbox.create('base'),
      Sandbox.create('base'),
    ]);
    expect(new Set(sandboxes.map((s) => s.sandboxId)).size).toBe(3);
    await Promise.all(sandboxes.map((s) => s.kill()));
  });
});
