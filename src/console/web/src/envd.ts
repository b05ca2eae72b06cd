// A sandbox's envd as the SDK reaches it: Connect RPCs (connect-web, the transport the e2b SDK
// itself uses) and `/files`, on Cove's one port, routed to the sandbox by E2b-Sandbox-Id and
// E2b-Sandbox-Port and authorised by the sandbox's envd access token (which `GET /sandboxes/:id`
// hands to any valid key, as E2B's API does). So the terminal and the file browser go through
// exactly the code, checks and audit records the SDK's calls do; the console adds no route.

import { createClient, type Client, type Interceptor } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-web';
import { Filesystem } from '../../../gen/filesystem/filesystem_pb.js';
import { Process } from '../../../gen/process/process_pb.js';
import { api, errorOf } from './api.ts';

/** envd's port in an E2B sandbox (src/gateway/gateway.ts, ENVD_PORT). */
const ENVD_PORT = '49983';

export interface Envd {
  process: Client<typeof Process>;
  filesystem: Client<typeof Filesystem>;
  /** Headers for `/files` requests to this sandbox. */
  headers(): Headers;
}

function envdHeaders(id: string, token: string | undefined): Headers {
  const h = new Headers({ 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': ENVD_PORT });
  if (token) h.set('X-Access-Token', token);
  return h;
}

/** The envd of sandbox `id`: its access token comes from the API, under the signed-in key. */
export async function envdOf(id: string): Promise<Envd> {
  const { envdAccessToken } = await api<{ envdAccessToken?: string }>(`/sandboxes/${id}`);
  const addHeaders: Interceptor = (next) => (req) => {
    envdHeaders(id, envdAccessToken).forEach((v, k) => req.header.set(k, v));
    return next(req);
  };
  const transport = createConnectTransport({
    baseUrl: location.origin,
    interceptors: [addHeaders],
    fetch: (input, init) => fetch(input, { ...init, credentials: 'omit' }),
  });
  return {
    process: createClient(Process, transport),
    filesystem: createClient(Filesystem, transport),
    headers: () => envdHeaders(id, envdAccessToken),
  };
}

async function filesCall(envd: Envd, path: string, init: RequestInit = {}): Promise<Response> {
  const headers = envd.headers();
  new Headers(init.headers).forEach((v, k) => headers.set(k, v));
  const res = await fetch(`/files?path=${encodeURIComponent(path)}`, {
    ...init,
    headers,
    credentials: 'omit',
    cache: 'no-store',
  });
  if (res.ok) return res;
  throw await errorOf(res);
}

/** Reads a file of the sandbox (as its default user) into memory. */
export async function readFile(envd: Envd, path: string): Promise<Blob> {
  return (await filesCall(envd, path)).blob();
}

/** Writes `data` to `path` in the sandbox (envd's raw-body upload, 0.5.7 and later). */
export async function writeFile(envd: Envd, path: string, data: Blob): Promise<void> {
  await filesCall(envd, path, {
    method: 'POST',
    body: data,
    headers: { 'content-type': 'application/octet-stream' },
  });
}
