import { setTimeout as sleep } from 'node:timers/promises';
import { CoveError } from '../../core/errors.ts';
import type { ProviderConfig } from '../config.ts';

export interface UpstreamOptions {
  timeoutMs: number;
  retries: number;
  retryBaseMs: number;
}

/** Request headers a client may pass on to the provider; everything else (its token above all) stays here. */
const FORWARDED_REQUEST = ['anthropic-version', 'anthropic-beta', 'openai-beta', 'accept'];

/**
 * Calls a provider and returns its response once the headers arrived. Retries with exponential
 * back-off (or the provider's Retry-After, up to 10 s) on 429, 5xx and connection failures:
 * nothing has reached the client yet, so a retry is invisible to it. The provider's key is set
 * here and nowhere else. Failures become clear CoveErrors: the provider by name, what it said.
 */
export async function callUpstream(
  provider: ProviderConfig,
  path: string,
  body: string,
  clientHeaders: Headers,
  opts: UpstreamOptions & { signal?: AbortSignal },
): Promise<Response> {
  const headers = new Headers({ 'content-type': 'application/json' });
  for (const name of FORWARDED_REQUEST) {
    const v = clientHeaders.get(name);
    if (v) headers.set(name, v);
  }
  if (provider.api === 'anthropic') {
    headers.set('x-api-key', provider.key);
    if (!headers.has('anthropic-version')) headers.set('anthropic-version', '2023-06-01');
  } else headers.set('authorization', `Bearer ${provider.key}`);
  const url = provider.baseUrl.replace(/\/+$/, '') + path;

  for (let attempt = 0; ; attempt++) {
    const last = attempt >= opts.retries;
    const timeout = AbortSignal.timeout(opts.timeoutMs);
    const signal = opts.signal ? AbortSignal.any([timeout, opts.signal]) : timeout;
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers, body, signal });
    } catch (err) {
      if (opts.signal?.aborted) throw new CoveError('unavailable', 'the client went away', { cause: err });
      const cause = err as Error & { cause?: { code?: string } };
      if (timeout.aborted)
        throw new CoveError(
          'deadline_exceeded',
          `provider '${provider.name}' did not answer within ${opts.timeoutMs} ms`,
          { cause: err },
        );
      if (!last) {
        await sleep(backoff(opts.retryBaseMs, attempt));
        continue;
      }
      throw new CoveError(
        'unavailable',
        `provider '${provider.name}' is unreachable: ${cause.cause?.code ?? cause.message}`,
        { cause: err },
      );
    }
    if (res.status === 429 || res.status >= 500) {
      if (!last) {
        await res.body?.cancel();
        await sleep(retryAfter(res.headers.get('retry-after')) ?? backoff(opts.retryBaseMs, attempt));
        continue;
      }
      const said = await excerpt(res);
      if (res.status === 429)
        throw new CoveError(
          'resource_exhausted',
          `provider '${provider.name}' is rate limiting (429 after ${attempt + 1} attempts): ${said}`,
        );
      throw new CoveError(
        'unavailable',
        `provider '${provider.name}' failed (${res.status} after ${attempt + 1} attempts): ${said}`,
      );
    }
    if (res.status === 401 || res.status === 403) {
      // The provider refused Cove's key: the operator's problem, not the caller's token.
      const said = await excerpt(res);
      throw new CoveError(
        'unavailable',
        `provider '${provider.name}' refused Cove's credentials (${res.status}): ${said}`,
      );
    }
    return res;
  }
}

function backoff(base: number, attempt: number): number {
  return base * 2 ** attempt * (0.5 + Math.random() / 2);
}

function retryAfter(value: string | null): number | undefined {
  const s = Number(value);
  return value && Number.isFinite(s) && s >= 0 ? Math.min(s, 10) * 1000 : undefined;
}

/** The start of an error body, for a message: providers put the reason there. */
async function excerpt(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const json = JSON.parse(text) as { error?: { message?: string } | string; message?: string };
    const msg = typeof json.error === 'string' ? json.error : (json.error?.message ?? json.message);
    if (msg) return msg.slice(0, 300);
  } catch {
    // not JSON: the raw text below
  }
  return text.slice(0, 300) || res.statusText;
}
