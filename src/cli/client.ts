import { CoveError, type ErrorCode } from '../core/errors.ts';

const statusCodes: Record<number, ErrorCode> = {
  400: 'invalid_argument',
  401: 'unauthenticated',
  403: 'permission_denied',
  404: 'not_found',
  409: 'conflict',
  429: 'resource_exhausted',
  503: 'unavailable',
  504: 'deadline_exceeded',
};

/** A thin HTTP client of Cove's API for the CLI. Errors come back as CoveErrors. */
export function createClient(baseUrl: string, apiKey: string | undefined) {
  async function request(method: string, path: string, body?: unknown): Promise<Response> {
    let res: Response;
    try {
      res = await fetch(new URL(path, baseUrl), {
        method,
        headers: {
          ...(apiKey && { 'x-api-key': apiKey }),
          ...(body !== undefined && { 'content-type': 'application/json' }),
        },
        ...(body !== undefined && { body: JSON.stringify(body) }),
      });
    } catch (err) {
      throw new CoveError('unavailable', `cannot reach Cove at ${baseUrl} (is \`cove serve\` running?)`, {
        cause: err,
      });
    }
    if (res.ok) return res;
    const text = await res.text();
    let message = text;
    try {
      message = (JSON.parse(text) as { message?: string }).message ?? text;
    } catch {
      // not JSON: keep the text
    }
    if (res.status === 401)
      message = apiKey
        ? `${message} (the key in COVE_API_KEY or E2B_API_KEY)`
        : 'no API key: set E2B_API_KEY (the first `cove serve` printed one) or make one with `cove keys create`';
    throw new CoveError(statusCodes[res.status] ?? 'internal', message || `HTTP ${res.status}`);
  }

  return {
    request,
    async json<T>(method: string, path: string, body?: unknown): Promise<T> {
      return (await (await request(method, path, body)).json()) as T;
    },
  };
}
