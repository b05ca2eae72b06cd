import { CoveError, httpStatus, type ErrorCode } from '../core/errors.ts';

// The inverse of the server's one table; where two codes share a status (409), the first
// listed wins: they share an exit status too.
const statusCodes = new Map<number, ErrorCode>(
  (Object.entries(httpStatus) as Array<[ErrorCode, number]>)
    .reverse()
    .map(([code, status]) => [status, code]),
);

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
    throw new CoveError(statusCodes.get(res.status) ?? 'internal', message || `HTTP ${res.status}`);
  }

  return {
    request,
    async json<T>(method: string, path: string, body?: unknown): Promise<T> {
      return (await (await request(method, path, body)).json()) as T;
    },
  };
}
