import { fork, type ChildProcess } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Manager } from '../src/manager/manager.ts';
import type { Request } from './e2b-client.ts';
import { childClient } from './ipc.ts';
import { startNullServer } from './null-server.ts';
import { must } from './sh.ts';
import { since } from './stats.ts';
import type { Subject } from './subject.ts';

/** Where every subject puts the bench's file inside its sandbox. */
export const FILE_TARGET = '/tmp/coveb-file.bin';

export interface E2bOptions {
  /** Cove's address and API key (startCove's), and its manager for cleanup (none: a null server). */
  url: string;
  apiKey: string;
  manager?: Manager;
  /** The host file to move (--files-mib of random bytes) and a scratch dir for what comes back. */
  file: string;
  scratch: string;
}

/**
 * The unmodified `e2b` SDK against the bench's Cove, driven in a child process
 * (bench/e2b-client.ts) so that it does not share the server's event loop.
 */
export function e2bSubject(opts: E2bOptions, runtime = 'cove-e2b'): Subject {
  const child: ChildProcess = fork(join(import.meta.dirname, 'e2b-client.ts'), [], {
    env: {
      ...process.env,
      E2B_API_URL: opts.url,
      E2B_SANDBOX_URL: opts.url,
      E2B_API_KEY: opts.apiKey,
      BENCH_FILE: opts.file,
      BENCH_FILE_TARGET: FILE_TARGET,
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const { ask, close } = childClient<Request>(child, 'e2b client', { op: 'close' });

  return {
    runtime,
    notes: [
      'e2b SDK 2.51 in a child process (not the server\'s event loop; times taken in the child around the SDK call): create + first command = Sandbox.create() + commands.run("true") (= /bin/bash -l -c true); kill = sandbox.kill()',
      'command round-trip = the SDK\'s own Connect client (Commands.rpc, not public API) starting /usr/bin/true without bash; login-shell round trip = commands.run("true")',
      `file transfer = files.write("${FILE_TARGET}", ArrayBuffer) (the SDK's default multipart/form-data) and files.read(…, {format: "bytes"}) into memory; on crun the server moves the bytes itself through the descriptor the agent opened (src/agent-channel/host-files.ts)`,
    ],
    create: () => ask<Record<string, number>>({ op: 'create' }),
    startLong: () => ask<void>({ op: 'startLong' }),
    roundTrip: () => ask<number>({ op: 'rawRoundTrip' }),
    shellRoundTrip: () => ask<number>({ op: 'roundTrip' }),
    transfer: {
      write: () => ask<number>({ op: 'write' }),
      read: () => ask<number>({ op: 'read' }),
      writeOctet: () => ask<number>({ op: 'writeOctet' }),
    },
    async cleanup() {
      await close();
      for (const s of opts.manager?.list() ?? []) await opts.manager?.kill(s.id).catch(() => undefined);
      return [];
    },
  };
}

/**
 * The server's own capacity for /files, without the SDK: curl (a separate process, C, no
 * event loop of ours) POSTs the file as application/octet-stream and GETs it back into a
 * host file, with the headers the SDK sends and the token from the create reply.
 */
export async function curlSubject(opts: E2bOptions): Promise<Subject> {
  let id: string | undefined;
  let token = '';
  const back = join(opts.scratch, 'curl-back.bin');
  const { size } = await stat(opts.file);
  const url = `${opts.url}/files?path=${encodeURIComponent(FILE_TARGET)}`;
  const headers = () => [
    '-H',
    `E2b-Sandbox-Id: ${id ?? ''}`,
    '-H',
    'E2b-Sandbox-Port: 49983',
    '-H',
    `X-Access-Token: ${token}`,
  ];

  return {
    runtime: 'cove-curl',
    notes: [
      'curl (one process per transfer, wall time including its start, ~5 ms): POST /files?path=… -T file with Content-Type: application/octet-stream (streamed), GET /files?path=… -o host file; E2b-Sandbox-Id / E2b-Sandbox-Port: 49983 / X-Access-Token from POST /v2/sandboxes {secure: true}',
    ],
    async startLong() {
      const res = await fetch(`${opts.url}/v2/sandboxes`, {
        method: 'POST',
        headers: { 'x-api-key': opts.apiKey, 'content-type': 'application/json' },
        body: JSON.stringify({ templateID: 'base', timeout: 3600, secure: true }),
      });
      if (res.status !== 201) throw new Error(`POST /v2/sandboxes: HTTP ${res.status} ${await res.text()}`);
      const reply = (await res.json()) as { sandboxID: string; envdAccessToken?: string };
      id = reply.sandboxID;
      token = reply.envdAccessToken ?? '';
      if (!token) throw new Error('POST /v2/sandboxes {secure: true} returned no envdAccessToken');
    },
    transfer: {
      async write() {
        const start = performance.now();
        const r = await must('curl', [
          '-sS',
          '--fail-with-body',
          '-o',
          '/dev/null',
          '-X',
          'POST',
          '-T',
          opts.file,
          '-H',
          'Content-Type: application/octet-stream',
          // No `Expect: 100-continue` wait (curl's default above 1 MB; fetch never sends it).
          '-H',
          'Expect:',
          ...headers(),
          url,
        ]);
        const ms = since(start);
        if (r.stderr.trim()) throw new Error(`curl upload: ${r.stderr.trim()}`);
        return ms;
      },
      async read() {
        const start = performance.now();
        await must('curl', ['-sS', '--fail-with-body', '-o', back, ...headers(), url]);
        const ms = since(start);
        const got = (await stat(back)).size;
        if (got !== size) throw new Error(`curl download: ${got} bytes, wrote ${size}`);
        return ms;
      },
    },
    async cleanup() {
      if (id) await opts.manager?.kill(id).catch(() => undefined);
      return [];
    },
  };
}

/**
 * The SDK's ceiling (`sdk-null`): the same SDK child as cove-e2b against bench/null-server.ts,
 * which answers every call from memory and does no work. What it measures is the SDK's own
 * cost on this host, in the same run as Cove's rows.
 */
export async function sdkNullSubject(opts: { file: string; scratch: string }): Promise<Subject> {
  const { size } = await stat(opts.file);
  const server = await startNullServer({ fileBytes: size });
  const sdk = e2bSubject(
    { url: server.url, apiKey: server.apiKey, file: opts.file, scratch: opts.scratch },
    'sdk-null',
  );
  let closed = false;
  return {
    ...sdk,
    notes: [
      "the e2b SDK child of cove-e2b, same operations, against a loopback null server in the bench process (bench/null-server.ts): canned create/kill replies, process.Start answers start + end at once, uploads read and dropped, downloads a preallocated buffer sent as identity. The SDK's own cost: no server can be faster through it",
    ],
    async cleanup() {
      const left = await sdk.cleanup();
      if (!closed) await server.close();
      closed = true;
      return left;
    },
  };
}
