import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, sh, startTestCove, stopTestCove, testConfig, pointSdkAt } from './helpers.ts';
import {
  ANTHROPIC_SECRET,
  OPENAI_SECRET,
  startStandIn,
  standInConfig,
  type StandIn,
} from './services-stand-in.ts';

const loadE2b = () => import('e2b');

/**
 * The model gateway (issue 14), called from inside real sandboxes with curl, against stand-in
 * providers on loopback: streamed calls pass through unbuffered and are counted, the sandbox
 * holds only its own token, quotas answer 429, bad input gets clear errors, and a restart
 * keeps tokens and the ledger.
 */
describe.skipIf(!canRunSandboxes)('runtime services: the model gateway', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let standIn: StandIn;
  let sandbox: Awaited<ReturnType<typeof create>>;
  let e2b: Awaited<ReturnType<typeof loadE2b>>;

  const create = () => e2b.Sandbox.create('base', { timeoutMs: 600_000 });
  const run = async (id: string, script: string) => {
    const r = await sh(cove.manager, id, script);
    expect(r.exitCode, r.stderr).toBe(0);
    return r.stdout;
  };
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${cove.url}${path}`, {
      ...init,
      headers: { 'x-api-key': cove.apiKey, 'content-type': 'application/json', ...init.headers },
    });
  const curlJson = (path: string, body: string) =>
    `curl -sS -m 20 "$COVE_SERVICES_URL${path}" -H "Authorization: Bearer $COVE_SERVICES_TOKEN" ` +
    `-H 'content-type: application/json' --data-binary '${body}' -w '\\n%{http_code}'`;

  beforeAll(async () => {
    standIn = await startStandIn();
    const config = testConfig();
    writeFileSync(join(config.home, 'services.json'), JSON.stringify(standInConfig(standIn.url)));
    cove = await startTestCove(config);
    pointSdkAt(cove);
    e2b = await loadE2b();
    sandbox = await create();
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
    await standIn?.close();
  });

  it('streams a chat completion from inside a sandbox, unbuffered, and counts its usage', async () => {
    const id = sandbox.sandboxId;
    let seen = '';
    let firstChunk!: () => void;
    const gotFirst = new Promise<void>((r) => (firstChunk = r));
    const done = new Promise<string>((resolve, reject) => {
      cove.manager
        .exec(
          id,
          {
            argv: [
              '/bin/bash',
              '-c',
              `curl -sSN -m 30 "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer $OPENAI_API_KEY" ` +
                `-H 'content-type: application/json' -d '{"model":"gated-model","stream":true,"messages":[{"role":"user","content":"hi"}]}'`,
            ],
          },
          {
            onData: (_s, d) => {
              seen += d.toString();
              if (seen.includes('Hello')) firstChunk();
            },
            onExit: () => resolve(seen),
          },
        )
        .catch(reject);
    });
    // The stand-in holds the rest of the stream until the first chunk reached curl: a
    // gateway that buffered would never let it through.
    await gotFirst;
    expect(seen).not.toContain('[DONE]');
    standIn.release();
    const out = await done;
    expect(out).toContain(' from stand-in');
    expect(out).toContain('"usage"');
    expect(out).toContain('data: [DONE]');
    // Cove asked the provider for the usage chunk, with its own key.
    const req = standIn.requests.at(-1)!;
    expect(req.body.stream_options).toEqual({ include_usage: true });
    expect(req.headers.authorization).toBe(`Bearer ${OPENAI_SECRET}`);
    const usage = (await (await api(`/cove/v1/usage?sandboxId=${id}`)).json()) as Record<string, unknown>;
    expect(usage).toMatchObject({ requests: 1, inputTokens: 11, outputTokens: 3, totalTokens: 14 });
  });

  it('forwards Anthropic messages, streamed and not, and counts both', async () => {
    const id = sandbox.sandboxId;
    const body = (stream: boolean) =>
      `{"model":"claude-test","max_tokens":10,"stream":${stream},"messages":[{"role":"user","content":"hi"}]}`;
    const streamed = await run(
      id,
      `curl -sSN -m 20 "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: $ANTHROPIC_API_KEY" ` +
        `-H 'anthropic-version: 2023-06-01' -H 'content-type: application/json' -d '${body(true)}'`,
    );
    expect(streamed).toContain('event: message_stop');
    const plain = await run(
      id,
      `curl -sS -m 20 "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: $ANTHROPIC_API_KEY" ` +
        `-H 'content-type: application/json' -d '${body(false)}'`,
    );
    expect(JSON.parse(plain)).toMatchObject({ content: [{ text: 'Hello from stand-in' }] });
    expect(standIn.requests.at(-1)!.headers['x-api-key']).toBe(ANTHROPIC_SECRET);
    const usage = (await (await api(`/cove/v1/usage?sandboxId=${id}`)).json()) as {
      byModel: Array<{ model: string; requests: number; inputTokens: number; outputTokens: number }>;
    };
    expect(usage.byModel.find((m) => m.model === 'claude-test')).toEqual({
      model: 'claude-test',
      requests: 2,
      inputTokens: 18,
      outputTokens: 8,
    });
  });

  it('never shows the sandbox a provider key: env and files hold only its own token', async () => {
    const id = sandbox.sandboxId;
    const env = await run(id, 'env');
    expect(env).toMatch(/^OPENAI_API_KEY=cst_/m);
    expect(env).toMatch(/^ANTHROPIC_API_KEY=cst_/m);
    expect(env).not.toContain(OPENAI_SECRET);
    expect(env).not.toContain(ANTHROPIC_SECRET);
    // The secrets travel encoded, so that grep's own command line does not hold them.
    const patterns = Buffer.from(`${OPENAI_SECRET}\n${ANTHROPIC_SECRET}\n`).toString('base64');
    const r = await sh(
      cove.manager,
      id,
      `grep -rlsF -f <(echo ${patterns} | base64 -d) --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev / ; ` +
        `grep -lsF -f <(echo ${patterns} | base64 -d) /proc/*/environ /proc/*/cmdline; true`,
      { user: 'root' },
    );
    expect(r.stdout).toBe('');
  });

  it('lists models, and answers bad input with clear errors', async () => {
    const models = (await (await api('/v1/models')).json()) as { data: Array<{ id: string }> };
    expect(models.data.map((m) => m.id)).toContain('claude-test');
    const id = sandbox.sandboxId;
    const unknown = await run(id, curlJson('/v1/chat/completions', '{"model":"nope","messages":[]}'));
    expect(unknown).toMatch(/model 'nope' is not served here[\s\S]*\n404$/);
    const malformed = await run(id, curlJson('/v1/chat/completions', '{"model":'));
    expect(malformed).toMatch(/not valid JSON[\s\S]*\n400$/);
    const big = await run(
      id,
      `head -c 70000 /dev/zero | tr '\\0' a | sed 's/.*/{"model":"gpt-test","messages":[{"role":"user","content":"&"}]}/' > /tmp/big.json; ` +
        `curl -sS -m 20 "$OPENAI_BASE_URL/chat/completions" -H "Authorization: Bearer $OPENAI_API_KEY" ` +
        `-H 'content-type: application/json' --data-binary @/tmp/big.json -w '\\n%{http_code}'`,
    );
    expect(big).toMatch(/larger than the limit of 65536 bytes[\s\S]*\n400$/);
    const wrongApi = await run(id, curlJson('/v1/chat/completions', '{"model":"claude-test","messages":[]}'));
    expect(wrongApi).toMatch(/\/v1\/messages[\s\S]*\n400$/);
    const noToken = await run(id, 'curl -sS -m 5 "$COVE_SERVICES_URL/v1/models" -w "\\n%{http_code}"');
    expect(noToken).toMatch(/\n401$/);
    // Cove's own port: the API key, and no sandbox token.
    const bad = await fetch(`${cove.url}/v1/models`, { headers: { authorization: 'Bearer cst_x' } });
    expect(bad.status).toBe(401);
  });

  it('retries a failing provider with back-off, and maps a timeout to a clear error', async () => {
    const ok = await api('/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ model: 'flaky-model', messages: [] }),
    });
    expect(ok.status).toBe(200);
    expect(standIn.requests.filter((r) => r.body.model === 'flaky-model')).toHaveLength(3);
    const slow = await api('/v1/chat/completions', {
      method: 'POST',
      body: JSON.stringify({ model: 'slow-model', messages: [] }),
    });
    expect(slow.status).toBe(504);
    expect(((await slow.json()) as { error: { message: string } }).error.message).toMatch(
      /provider 'standin' did not answer within 2000 ms/,
    );
  });

  it('refuses a call over the sandbox quota with 429, and other sandboxes keep theirs', async () => {
    const other = await create();
    const call = () =>
      run(other.sandboxId, curlJson('/v1/chat/completions', '{"model":"big-model","messages":[]}'));
    expect(await call()).toMatch(/\n200$/);
    expect(await call()).toMatch(/\n200$/); // 150 tokens used of 200: still admitted
    expect(await call()).toMatch(/quota exceeded: 300 of 200 tokens per day[\s\S]*\n429$/);
    expect(
      await run(sandbox.sandboxId, curlJson('/v1/chat/completions', '{"model":"gpt-test","messages":[]}')),
    ).toMatch(/\n200$/);
    await other.kill();
  });

  it('gives a key its own quota through the API, kept per minute, and takes it back', async () => {
    const { keyId } = (await (await api('/cove/v1/usage')).json()) as { keyId: string };
    const set = await api(`/cove/v1/quotas/${keyId}`, {
      method: 'PUT',
      body: JSON.stringify({ requestsPerMinute: 2 }),
    });
    expect(await set.json()).toEqual({
      keyId,
      requestsPerMinute: 2,
      tokensPerDay: null,
      override: { requestsPerMinute: 2 },
    });
    const call = () =>
      run(sandbox.sandboxId, curlJson('/v1/chat/completions', '{"model":"gpt-test","messages":[]}'));
    expect(await call()).toMatch(/\n200$/);
    expect(await call()).toMatch(/\n200$/);
    expect(await call()).toMatch(new RegExp(`2 requests per minute for key ${keyId}[\\s\\S]*\\n429$`));
    const bad = await api(`/cove/v1/quotas/${keyId}`, { method: 'PUT', body: '{"requestsPerMinute":-1}' });
    expect(bad.status).toBe(400);
    expect((await api('/cove/v1/quotas/key_0123', { method: 'PUT', body: '{}' })).status).toBe(404);
    expect((await api(`/cove/v1/quotas/${keyId}`, { method: 'DELETE' })).status).toBe(204);
    expect(await call()).toMatch(/\n200$/);
  });

  it('memory from a sandbox: stores, recalls a fact phrased differently, expires and forgets', async () => {
    const id = sandbox.sandboxId;
    const stored = await run(
      id,
      curlJson(
        '/v1/memory/notes/entries',
        '{"text":"The user prefers tabs over spaces when indenting code","metadata":{"source":"chat"}}',
      ),
    );
    expect(stored).toMatch(/\n201$/);
    const fact = JSON.parse(stored.split('\n')[0]!) as { id: number };
    await run(id, curlJson('/v1/memory/notes/entries', '{"text":"The staging server reboots nightly"}'));
    await run(
      id,
      curlJson('/v1/memory/notes/entries', '{"text":"draft reply to Alice","kind":"short","ttlSeconds":1}'),
    );
    const recall = (query: string) =>
      run(id, curlJson('/v1/memory/notes/recall', JSON.stringify({ query }))).then(
        (out) =>
          (JSON.parse(out.split('\n')[0]!) as { results: Array<{ id: number; text: string }> }).results,
      );
    const found = await recall('How should indentation be done? Which does the user prefer?');
    expect(found[0]).toMatchObject({ id: fact.id, metadata: { source: 'chat' } });
    expect((await recall('reply Alice')).map((r) => r.text)).toContain('draft reply to Alice');
    await new Promise((r) => setTimeout(r, 1100));
    expect((await recall('reply Alice')).map((r) => r.text)).not.toContain('draft reply to Alice');
    // The key's holder sees the same memory on Cove's port (a sandbox uses its creator key's).
    const listed = (await (await api('/v1/memory/notes/entries')).json()) as { entries: unknown[] };
    expect(listed.entries).toHaveLength(2);
    // A document from a file of the sandbox, recalled with a citation back to its chunk.
    await run(
      id,
      `printf 'Setup guide\n\nInstall with apt.\n\nThe database password rotates every 30 days.\n' > /home/user/guide.txt`,
    );
    const doc = await run(id, curlJson('/v1/memory/notes/documents', '{"path":"guide.txt","chunkSize":200}'));
    expect(doc).toMatch(/\n201$/);
    const [hit] = (await recall('how often are passwords rotated')) as Array<{
      citation?: { title: string };
    }>;
    expect(hit?.citation?.title).toBe('guide.txt');
    const forget = await run(
      id,
      `curl -sS -m 5 -X DELETE "$COVE_SERVICES_URL/v1/memory/notes/entries/${fact.id}" -H "Authorization: Bearer $COVE_SERVICES_TOKEN" -w '%{http_code}'`,
    );
    expect(forget).toBe('204');
    expect((await recall('user prefers tabs')).map((r) => r.id)).not.toContain(fact.id);
    const bad = await run(id, curlJson('/v1/memory/no%20pe/recall', '{"query":"x"}'));
    expect(bad).toMatch(/namespace[\s\S]*\n400$/);
    const noQuery = await run(id, curlJson('/v1/memory/notes/recall', '{"limit":3}'));
    expect(noQuery).toMatch(/query[\s\S]*\n400$/);
  });

  it('searches through the configured SearXNG-compatible provider', async () => {
    const out = await run(sandbox.sandboxId, curlJson('/v1/search', '{"query":"cove sandboxes","limit":1}'));
    expect(out).toMatch(/\n200$/);
    expect(JSON.parse(out.split('\n')[0]!)).toEqual({
      query: 'cove sandboxes',
      results: [
        { title: 'About cove sandboxes', url: 'https://example.org/a', content: 'first', engine: 'stand-in' },
      ],
      answers: [],
      suggestions: ['more'],
    });
    const bad = await run(sandbox.sandboxId, curlJson('/v1/search', '{"q":"x"}'));
    expect(bad).toMatch(/\n400$/);
  });

  it('memory through MCP tools: the same memory as the REST API', async () => {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', cove.url), {
      requestInit: { headers: { 'x-api-key': cove.apiKey } },
    });
    const client = new Client({ name: 'svc-test', version: '1' });
    await client.connect(transport);
    const call = async (name: string, args: Record<string, unknown>) =>
      (await client.callTool({ name, arguments: args })) as CallToolResult;
    const stored = await call('memory_store', {
      namespace: 'mcp',
      text: 'The invoices are exported every Monday',
    });
    expect(stored.isError).toBeFalsy();
    const id = (stored.structuredContent as { id: number }).id;
    const recalled = await call('memory_recall', { namespace: 'mcp', query: 'when is the invoice export?' });
    expect((recalled.structuredContent as { results: Array<{ id: number }> }).results[0]?.id).toBe(id);
    const rest = (await (await api(`/v1/memory/mcp/entries/${id}`)).json()) as { text: string };
    expect(rest.text).toBe('The invoices are exported every Monday');
    const bad = await call('memory_forget', { namespace: 'mcp' });
    expect(bad.isError).toBe(true);
    expect((await call('memory_forget', { namespace: 'mcp', id })).structuredContent).toEqual({
      forgotten: 1,
    });
    await client.close();
  });

  it('a fork gets its own token, which outlives its source', async () => {
    const source = await create();
    const [fork] = await source.fork();
    if (!(fork instanceof e2b.Sandbox)) throw new Error(`fork failed: ${String(fork)}`);
    const tokens = async (id: string) =>
      (await run(id, 'printf "%s %s" "$COVE_SERVICES_TOKEN" "$OPENAI_API_KEY"')).trim().split(' ');
    const [sourceToken] = await tokens(source.sandboxId);
    const [forkToken, forkOpenAi] = await tokens(fork.sandboxId);
    expect(forkToken).toMatch(/\S/);
    expect(forkToken).not.toBe(sourceToken);
    expect(forkOpenAi).toBe(forkToken);
    await source.kill();
    const models = await run(
      fork.sandboxId,
      'curl -sS -m 5 "$COVE_SERVICES_URL/v1/models" -H "Authorization: Bearer $COVE_SERVICES_TOKEN" -w "\\n%{http_code}"',
    );
    expect(models).toMatch(/\n200$/);
    await fork.kill();
  });

  it('keeps tokens and usage across a Cove restart; a killed sandbox token dies', async () => {
    const id = sandbox.sandboxId;
    const before = (await (await api(`/cove/v1/usage?sandboxId=${id}`)).json()) as { requests: number };
    const token = (await run(id, 'printf %s "$COVE_SERVICES_TOKEN"')).trim();
    await cove.close();
    cove = await startTestCove(cove.config);
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    const after = (await (await api(`/cove/v1/usage?sandboxId=${id}`)).json()) as { requests: number };
    expect(after.requests).toBe(before.requests);
    const remembered = await api('/v1/memory/notes/recall', {
      method: 'POST',
      body: JSON.stringify({ query: 'staging server reboot' }),
    });
    expect(((await remembered.json()) as { results: Array<{ text: string }> }).results[0]?.text).toBe(
      'The staging server reboots nightly',
    );
    expect(await run(id, curlJson('/v1/chat/completions', '{"model":"gpt-test","messages":[]}'))).toMatch(
      /\n200$/,
    );
    const keyUsage = (await (await api('/v1/usage')).json()) as { requests: number };
    expect(keyUsage.requests).toBeGreaterThan(after.requests);
    await cove.manager.kill(id);
    const other = await create();
    // the dead sandbox's token, presented from another sandbox
    const r = await run(
      other.sandboxId,
      `curl -sS -m 5 "$COVE_SERVICES_URL/v1/models" -H "Authorization: Bearer ${token}" -w '\\n%{http_code}'`,
    );
    expect(r).toMatch(/invalid or expired sandbox token[\s\S]*\n401$/);
    await other.kill();
  });
});
