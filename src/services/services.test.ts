import { DatabaseSync } from 'node:sqlite';
import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import { parseServicesConfig } from './config.ts';
import { meterStream } from './models/stream-usage.ts';
import { createQuotas } from './quotas.ts';
import { createTokens } from './tokens.ts';
import { createUsage } from './usage.ts';

describe('sandbox tokens', () => {
  const tokens = createTokens(Buffer.alloc(32, 7));
  it('parse what they mint, and nothing forged', () => {
    const t = tokens.mint({ sandboxId: 'abc123', keyId: 'key_0011aabb' });
    expect(tokens.parse(t)).toEqual({ sandboxId: 'abc123', keyId: 'key_0011aabb' });
    expect(tokens.parse(t.replace('abc123', 'abc124'))).toBeUndefined();
    expect(
      tokens.parse(createTokens(Buffer.alloc(32, 8)).mint({ sandboxId: 'abc123', keyId: 'key_00' })),
    ).toBeUndefined();
    expect(tokens.parse('e2b_0123')).toBeUndefined();
  });
});

describe('quotas', () => {
  it('count requests per sliding minute and tokens per day from the ledger', () => {
    let now = 1_000_000;
    const usage = createUsage(new DatabaseSync(':memory:'));
    const q = createQuotas(
      { perKey: { requestsPerMinute: 2 }, perSandbox: { tokensPerDay: 100 }, usage },
      () => now,
    );
    q.admit({ keyId: 'k' }, { tokens: true });
    q.admit({ keyId: 'k' }, { tokens: true });
    expect(() => q.admit({ keyId: 'k' }, { tokens: true })).toThrow(/2 requests per minute/);
    now += 60_001;
    q.admit({ keyId: 'k', sandboxId: 's' }, { tokens: true });
    usage.record({
      at: now,
      keyId: 'k',
      sandboxId: 's',
      service: 'models',
      inputTokens: 60,
      outputTokens: 40,
      status: 200,
    });
    let err: unknown;
    try {
      q.admit({ keyId: 'k', sandboxId: 's' }, { tokens: true });
    } catch (e) {
      err = e;
    }
    expect(isCoveError(err, 'resource_exhausted')).toBe(true);
    now += 24 * 3600_000 + 1;
    q.admit({ keyId: 'k', sandboxId: 's' }, { tokens: true });
  });
});

describe('quota overrides and windows', () => {
  it('a key override replaces the configured limit field by field, and windows outlive a restart', () => {
    const now = 5_000_000;
    const db = new DatabaseSync(':memory:');
    const usage = createUsage(db);
    const make = () =>
      createQuotas(
        { perKey: { requestsPerMinute: 5, tokensPerDay: 10 }, perSandbox: {}, usage, db },
        () => now,
      );
    const q = make();
    q.setOverride('a', { requestsPerMinute: 1 });
    expect(q.forKey('a')).toEqual({ requestsPerMinute: 1, tokensPerDay: 10 });
    expect(q.forKey('b')).toEqual({ requestsPerMinute: 5, tokensPerDay: 10 });
    q.admit({ keyId: 'a' }, { tokens: false });
    // a second Cove process on the same database: the minute's admission is still counted
    expect(() => make().admit({ keyId: 'a' }, { tokens: false })).toThrow(/1 requests per minute for key a/);
    q.setOverride('a', { requestsPerMinute: null, tokensPerDay: 1000 });
    expect(q.forKey('a')).toEqual({ requestsPerMinute: null, tokensPerDay: 1000 });
    for (let i = 0; i < 20; i++) q.admit({ keyId: 'a' }, { tokens: true });
    q.clearOverride('a');
    expect(q.override('a')).toBeUndefined();
    expect(() => q.admit({ keyId: 'a' }, { tokens: false })).not.toThrow();
  });
});

describe('meterStream', () => {
  async function meter(chunks: string[]) {
    let tokens: unknown;
    const source = new ReadableStream<Uint8Array>({
      start(c) {
        for (const s of chunks) c.enqueue(new TextEncoder().encode(s));
        c.close();
      },
    });
    const out: string[] = [];
    for await (const c of source.pipeThrough(
      meterStream((t) => (tokens = t)),
    ) as unknown as AsyncIterable<Uint8Array>)
      out.push(new TextDecoder().decode(c));
    return { tokens, out };
  }
  it('passes OpenAI chunks through as they are and reads the usage chunk split across reads', async () => {
    const chunks = [
      'data: {"choices":[]}\n\ndata: {"choices":[],"us',
      'age":{"prompt_tokens":5,"completion_tokens":7}}\n\n',
      'data: [DONE]\n\n',
    ];
    const { tokens, out } = await meter(chunks);
    expect(out).toEqual(chunks);
    expect(tokens).toEqual({ input: 5, output: 7 });
  });
  it('reads Anthropic message_start and message_delta usage', async () => {
    const { tokens } = await meter([
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":9,"cache_read_input_tokens":2,"output_tokens":1}}}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","usage":{"output_tokens":4}}\n\n',
    ]);
    expect(tokens).toEqual({ input: 11, output: 4 });
  });
});

describe('services config', () => {
  it('names the field at fault', () => {
    expect(() =>
      parseServicesConfig({
        providers: { x: { api: 'openai', baseUrl: 'nope', apiKey: 'k', models: ['m'] } },
      }),
    ).toThrow(/providers.x.baseUrl/);
    expect(() =>
      parseServicesConfig({ providers: { x: { api: 'openai', baseUrl: 'http://h/v1', models: ['m'] } } }),
    ).toThrow(/apiKey or apiKeyEnv/);
    expect(parseServicesConfig({}).retries).toBe(2);
  });
});
