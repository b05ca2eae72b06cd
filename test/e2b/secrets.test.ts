import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Secret, SecretNotFoundError } from 'e2b';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from '../helpers.ts';

type TestCove = Awaited<ReturnType<typeof startTestCove>>;

function useCove(cove: TestCove): void {
  process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
  process.env.E2B_API_KEY = cove.apiKey;
}

/** Every file under `dir`, as one string: to look for a value that must not be there. */
const everything = (dir: string): string =>
  readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => readFileSync(join(e.parentPath, e.name)).toString('latin1'))
    .join('\n');

/** The Secrets API (spec 2.16) through the unmodified SDK: values go in and never come out. */
describe.skipIf(!canRunSandboxes)('secrets through the e2b SDK', () => {
  let cove: TestCove;
  const config = testConfig();

  beforeAll(async () => {
    cove = await startTestCove(config);
    useCove(cove);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('creates, gets by id and name, updates to new versions, lists in pages and deletes', async () => {
    const value = `sk-live-${'x'.repeat(8)}-${Date.now()}`;
    const created = await Secret.create('OpenAI-Key', value, { metadata: { env: 'test' } });
    expect(created).toMatchObject({ name: 'openai-key', version: 1, metadata: { env: 'test' } });
    expect(created.secretId).toMatch(/^sec_/);
    expect(created).not.toHaveProperty('value');
    expect((await Secret.getInfo('openai-key')).secretId).toBe(created.secretId);
    expect((await Secret.getInfo(created.secretId)).name).toBe('openai-key');
    await expect(Secret.create('openai-key', 'other')).rejects.toThrow(/already exists/);

    const updated = await Secret.update(created.secretId, `${value}-v2`);
    expect(updated).toMatchObject({ secretId: created.secretId, version: 2, metadata: { env: 'test' } });
    expect((await Secret.update('openai-key', `${value}-v3`, { metadata: { env: 'prod' } })).version).toBe(3);
    await expect(Secret.update('missing', 'v')).rejects.toThrow(SecretNotFoundError);
    await expect(Secret.getInfo('missing')).rejects.toThrow(SecretNotFoundError);

    // Encrypted at rest, the key outside the secrets directory; no value in any reply or log.
    const files = everything(join(config.home, 'secrets'));
    expect(files).toContain(created.secretId);
    expect(files).not.toContain(value);
    expect(files).not.toContain(Buffer.from(value).toString('base64'));
    expect(config.secretsKeyFile.startsWith(join(config.home, 'secrets/'))).toBe(false);

    for (const name of ['page-a', 'page-b']) await Secret.create(name, 'v');
    const paginator = Secret.list({ limit: 2 });
    const first = await paginator.nextItems();
    expect(first).toHaveLength(2);
    expect(paginator.hasNext).toBe(true);
    const second = await paginator.nextItems();
    expect(second.map((s) => s.name)).toEqual(['page-b']);
    expect(paginator.hasNext).toBe(false);
    expect(JSON.stringify([...first, ...second])).not.toContain(value);

    expect(await Secret.exists('page-a')).toBe(true);
    expect(await Secret.destroy(created.secretId)).toBe(true);
    expect(await Secret.destroy(created.secretId)).toBe(false);
    expect(await Secret.exists(created.secretId)).toBe(false);
    await Secret.destroy('page-a');
    await Secret.destroy('page-b');
  });

  it('refuses bad input with 400 and keeps secrets across a restart', async () => {
    await expect(Secret.create('', 'v')).rejects.toThrow(/400|name/);
    await expect(Secret.create('ok-name', '')).rejects.toThrow(/400: value/);
    const kept = await Secret.create('kept', 'still-secret');
    await cove.close();
    cove = await startTestCove(config);
    useCove(cove);
    expect((await Secret.getInfo('kept')).secretId).toBe(kept.secretId);
    await Secret.destroy('kept');
    expect(await Secret.list().nextItems()).toEqual([]);
  });
});
