// The console's only way to the server: Cove's own API, with the key in X-API-Key, as the
// SDK sends it. No cookie is involved, so another site cannot make the browser send a
// request that carries the key (CSRF); the key never goes into a URL (history, logs).

const STORE = 'cove.console.session';
/** The key is forgotten after this long without a call, and when the tab closes. */
export const IDLE_MS = 30 * 60_000;

interface Session {
  key: string;
  expires: number;
}

const listeners = new Set<() => void>();

/** Called when the session ends (signed out, expired, or the key refused). */
export function onSignOut(f: () => void): () => void {
  listeners.add(f);
  return () => listeners.delete(f);
}

function read(): Session | undefined {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORE) ?? 'null') as Session | null;
    return s && typeof s.key === 'string' && s.expires > Date.now() ? s : undefined;
  } catch {
    return undefined;
  }
}

export function signedIn(): boolean {
  return read() !== undefined;
}

export function signOut(): void {
  sessionStorage.removeItem(STORE);
  for (const f of listeners) f();
}

export class ApiError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

async function call(key: string, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set('X-API-Key', key);
  const res = await fetch(path, { ...init, headers, credentials: 'omit', cache: 'no-store' });
  if (res.ok) return res;
  throw await errorOf(res);
}

/** A failed reply as an error: E2B's `{code, message}` body when there is one. */
export async function errorOf(res: Response): Promise<ApiError> {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = (await res.json()) as { message?: unknown };
    if (typeof body.message === 'string') message = body.message;
  } catch {
    // not JSON: the status line says enough
  }
  return new ApiError(res.status, message);
}

/** Checks the key with a call that needs one, and keeps it for this tab. */
export async function signIn(key: string): Promise<void> {
  await call(key.trim(), '/v2/sandboxes?limit=1');
  sessionStorage.setItem(STORE, JSON.stringify({ key: key.trim(), expires: Date.now() + IDLE_MS }));
}

/** An API call with the session's key; a refused key ends the session. */
export async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const session = read();
  if (!session) {
    signOut();
    throw new ApiError(401, 'signed out');
  }
  sessionStorage.setItem(STORE, JSON.stringify({ ...session, expires: Date.now() + IDLE_MS }));
  try {
    const res = await call(session.key, path, init);
    return (res.status === 204 ? undefined : await res.json()) as T;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) signOut();
    throw err;
  }
}

/** A JSON POST/DELETE. */
export function send<T>(method: 'POST' | 'DELETE', path: string, body?: unknown): Promise<T> {
  return api<T>(path, {
    method,
    ...(body !== undefined && {
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json' },
    }),
  });
}

/** A streaming GET with the session's key (Server-Sent Events): the open response. */
export async function openStream(path: string, signal: AbortSignal): Promise<Response> {
  const session = read();
  if (!session) {
    signOut();
    throw new ApiError(401, 'signed out');
  }
  try {
    return await call(session.key, path, { signal, headers: { accept: 'text/event-stream' } });
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) signOut();
    throw err;
  }
}
