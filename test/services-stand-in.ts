import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * Stand-ins for model providers, on loopback, speaking the real wire formats: OpenAI's chat
 * completions (JSON and SSE with the usage chunk of stream_options.include_usage) and
 * embeddings, and Anthropic's messages (JSON and SSE events). No request leaves the machine.
 * Models with behaviour: `flaky-model` fails with 503 twice then answers; `slow-model` never
 * answers; `big-model` reports 150 tokens; `gated-model` streams one chunk, then waits for `release()`.
 */
export const OPENAI_SECRET = 'sk-upstream-secret-0123456789';
export const ANTHROPIC_SECRET = 'sk-ant-upstream-secret-9876543210';

export interface StandIn {
  url: string;
  requests: Array<{ path: string; headers: IncomingMessage['headers']; body: Record<string, unknown> }>;
  release(): void;
  close(): Promise<void>;
}

/** A deterministic embedding: words hashed into 64 buckets, so that shared words mean similarity. */
export function embed(text: string): number[] {
  const v = new Array<number>(64).fill(0);
  for (const w of text.toLowerCase().match(/[a-z]+/g) ?? []) {
    let h = 0;
    for (const ch of w.slice(0, 5)) h = (h * 31 + ch.charCodeAt(0)) % 64;
    v[h]! += 1;
  }
  return v;
}

export async function startStandIn(): Promise<StandIn> {
  const requests: StandIn['requests'] = [];
  let flaky = 0;
  let release!: () => void;
  let gate = new Promise<void>((r) => (release = r));
  const server: Server = createServer((req, res) => void handle(req, res));

  async function handle(req: IncomingMessage, res: ServerResponse) {
    if (req.url?.startsWith('/searx/search?')) {
      const q = new URL(req.url, 'http://x').searchParams;
      requests.push({ path: req.url, headers: req.headers, body: {} });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          query: q.get('q'),
          number_of_results: 2,
          results: [
            {
              title: `About ${q.get('q')}`,
              url: 'https://example.org/a',
              content: 'first',
              engine: 'stand-in',
            },
            {
              title: 'Second',
              url: 'https://example.org/b',
              content: `format=${q.get('format')}`,
              engine: 'stand-in',
            },
          ],
          answers: [],
          suggestions: ['more'],
        }),
      );
      return;
    }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString() || '{}') as Record<string, unknown>;
    requests.push({ path: req.url ?? '', headers: req.headers, body });
    const json = (status: number, value: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    const sse = () =>
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const model = body.model as string;

    if (req.url?.startsWith('/openai/')) {
      if (req.headers.authorization !== `Bearer ${OPENAI_SECRET}`)
        return json(401, { error: { message: 'Incorrect API key provided', type: 'invalid_request_error' } });
      if (model === 'slow-model') return; // never answers
      if (model === 'flaky-model' && flaky++ < 2)
        return json(503, { error: { message: 'overloaded, try again' } });
      if (req.url === '/openai/v1/embeddings') {
        const inputs = Array.isArray(body.input) ? (body.input as string[]) : [body.input as string];
        const tokens = inputs.reduce((n, s) => n + s.split(/\s+/).length, 0);
        return json(200, {
          object: 'list',
          data: inputs.map((s, index) => ({ object: 'embedding', index, embedding: embed(s) })),
          model,
          usage: { prompt_tokens: tokens, total_tokens: tokens },
        });
      }
      const usage =
        model === 'big-model'
          ? { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 }
          : { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 };
      const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model };
      if (body.stream !== true)
        return json(200, {
          id: 'chatcmpl-1',
          object: 'chat.completion',
          created: 1,
          model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: 'Hello from stand-in' },
              finish_reason: 'stop',
            },
          ],
          usage,
        });
      sse();
      const send = (v: unknown) => res.write(`data: ${JSON.stringify(v)}\n\n`);
      send({
        ...base,
        choices: [{ index: 0, delta: { role: 'assistant', content: 'Hello' }, finish_reason: null }],
      });
      if (model === 'gated-model') await gate;
      send({ ...base, choices: [{ index: 0, delta: { content: ' from stand-in' }, finish_reason: null }] });
      send({ ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
      const so = body.stream_options as { include_usage?: boolean } | undefined;
      if (so?.include_usage) send({ ...base, choices: [], usage });
      res.end('data: [DONE]\n\n');
      return;
    }
    if (req.url === '/anthropic/v1/messages') {
      if (req.headers['x-api-key'] !== ANTHROPIC_SECRET || !req.headers['anthropic-version'])
        return json(401, {
          type: 'error',
          error: { type: 'authentication_error', message: 'invalid x-api-key' },
        });
      const message = {
        id: 'msg_1',
        type: 'message',
        role: 'assistant',
        model,
        stop_reason: null,
        stop_sequence: null,
      };
      if (body.stream !== true)
        return json(200, {
          ...message,
          content: [{ type: 'text', text: 'Hello from stand-in' }],
          stop_reason: 'end_turn',
          usage: { input_tokens: 9, output_tokens: 4 },
        });
      sse();
      const send = (type: string, v: Record<string, unknown>) =>
        res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...v })}\n\n`);
      send('message_start', {
        message: { ...message, content: [], usage: { input_tokens: 9, output_tokens: 1 } },
      });
      send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
      send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hello from stand-in' } });
      send('content_block_stop', { index: 0 });
      send('message_delta', {
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 4 },
      });
      send('message_stop', {});
      res.end();
      return;
    }
    json(404, { error: { message: `no route ${req.url}` } });
  }

  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    release: () => {
      release();
      gate = new Promise<void>((r) => (release = r));
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** The services.json a test Cove reads: both stand-ins, short timeouts, a token quota per sandbox. */
export function standInConfig(url: string) {
  return {
    providers: {
      standin: {
        api: 'openai',
        baseUrl: `${url}/openai/v1`,
        apiKey: OPENAI_SECRET,
        models: ['gpt-test', 'flaky-model', 'slow-model', 'big-model', 'gated-model', 'embed-test'],
      },
      claude: {
        api: 'anthropic',
        baseUrl: `${url}/anthropic`,
        apiKey: ANTHROPIC_SECRET,
        models: ['claude-test'],
      },
    },
    quotas: { perSandbox: { tokensPerDay: 200 } },
    timeoutMs: 2000,
    retries: 2,
    retryBaseMs: 50,
    maxRequestBytes: 65536,
    memory: { embeddingModel: 'embed-test' },
    search: { url: `${url}/searx/search` },
  };
}
