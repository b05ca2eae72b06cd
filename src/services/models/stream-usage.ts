/** Tokens an upstream reported for one call. */
export interface Tokens {
  input: number;
  output: number;
}

/**
 * Reads `usage` from an OpenAI or Anthropic JSON response body (not streamed).
 * OpenAI: prompt_tokens/completion_tokens (embeddings: prompt_tokens only);
 * Anthropic: input_tokens/output_tokens plus cache tokens, which count as input.
 */
export function usageOf(json: unknown): Tokens | undefined {
  const u = (json as { usage?: Record<string, unknown> } | null)?.usage;
  if (!u || typeof u !== 'object') return undefined;
  const n = (k: string) => (typeof u[k] === 'number' ? u[k] : 0);
  if ('input_tokens' in u || 'output_tokens' in u)
    return {
      input: n('input_tokens') + n('cache_creation_input_tokens') + n('cache_read_input_tokens'),
      output: n('output_tokens'),
    };
  return { input: n('prompt_tokens'), output: n('completion_tokens') };
}

/**
 * Passes an SSE stream through chunk by chunk (nothing is held back) while reading the usage
 * it reports: OpenAI's last chunk carries `usage` (with stream_options.include_usage);
 * Anthropic's `message_start` carries the input tokens and each `message_delta` the output
 * tokens so far. `done` is called once, at the end or when the client goes away.
 */
export function meterStream(done: (tokens: Tokens) => void): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let pending = '';
  const seen: Tokens = { input: 0, output: 0 };
  let finished = false;
  const finish = () => {
    if (finished) return;
    finished = true;
    done(seen);
  };
  const line = (text: string) => {
    if (!text.startsWith('data:') || !text.includes('"usage"')) return;
    let event: { type?: string; usage?: unknown; message?: { usage?: unknown } };
    try {
      event = JSON.parse(text.slice(5)) as typeof event;
    } catch {
      return;
    }
    if (event.type === 'message_start') {
      const u = usageOf(event.message);
      if (u) seen.input = u.input;
    } else if (event.type === 'message_delta') {
      const u = usageOf(event);
      if (u) seen.output = u.output;
    } else {
      const u = usageOf(event);
      if (u) Object.assign(seen, u);
    }
  };
  return new TransformStream({
    transform(chunk, controller) {
      controller.enqueue(chunk);
      pending += decoder.decode(chunk, { stream: true });
      // An event line may be split across chunks: keep the unfinished tail. Bounded: a line
      // longer than 1 MiB without a newline is no usage line.
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      if (pending.length > 1 << 20) pending = '';
      for (const l of lines) line(l.trimEnd());
    },
    flush() {
      line(pending.trimEnd());
      finish();
    },
    cancel() {
      finish();
    },
  });
}
