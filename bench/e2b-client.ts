// The `e2b` SDK side of the bench, in a child process of its own (bench/e2b.ts forks it), so
// that the SDK's event loop, parsing and GC never share a thread with the Cove server it
// measures. Every time is taken here, around the SDK call alone; the IPC to the parent is
// outside it. The parent sets E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY in the
// environment before forking.
import { readFile } from 'node:fs/promises';
import { Sandbox } from 'e2b';
import { serveParent } from './ipc.ts';

export type Request =
  | { op: 'create' }
  | { op: 'startLong' }
  | { op: 'roundTrip' }
  | { op: 'rawRoundTrip' }
  | { op: 'write' }
  | { op: 'writeOctet' }
  | { op: 'read' }
  | { op: 'close' };

/** The file the parent made (its bytes go up once per write) and where it goes in the sandbox. */
const SOURCE = process.env.BENCH_FILE ?? '';
const TARGET = process.env.BENCH_FILE_TARGET ?? '/tmp/coveb-file.bin';

let long: Sandbox | undefined;
let data: Uint8Array | undefined;

const since = (start: number) => Math.round((performance.now() - start) * 100) / 100;

function theLong(): Sandbox {
  if (!long) throw new Error('e2b: no long-lived sandbox');
  return long;
}

/** The subset of a Connect StartResponse stream (each wraps a ProcessEvent) that this file reads. */
interface StartResponse {
  event?: {
    event:
      { case: 'start' | 'data' | 'keepalive' | undefined } | { case: 'end'; value: { exitCode: number } };
  };
}
interface ProcessRpc {
  start(
    req: { process: { cmd: string; args: string[] }; stdin: boolean },
    opts: { headers?: Record<string, string> },
  ): AsyncIterable<StartResponse>;
}

async function handle(req: Request): Promise<unknown> {
  switch (req.op) {
    case 'create': {
      const start = performance.now();
      const sbx = await Sandbox.create({ timeoutMs: 60_000 });
      let killed = false;
      try {
        const created = since(start);
        const execStart = performance.now();
        await sbx.commands.run('true');
        const first = since(execStart);
        const total = since(start);
        const killStart = performance.now();
        await sbx.kill();
        killed = true;
        return { total, create: created, first, kill: since(killStart) };
      } finally {
        // Only after a failure: a second DELETE of a killed sandbox is a 404 the server answers
        // while the next measured create runs.
        if (!killed) await sbx.kill().catch(() => undefined);
      }
    }
    case 'startLong':
      long = await Sandbox.create({ timeoutMs: 3600_000 });
      return long.sandboxId;
    case 'roundTrip': {
      const sbx = theLong();
      const start = performance.now();
      // `/bin/bash -l -c true`: the SDK always runs a command through a login shell.
      await sbx.commands.run('true');
      return since(start);
    }
    case 'rawRoundTrip': {
      // The same Connect client, transport and token the SDK's commands.run uses (its
      // `rpc` field, not public API), asked for /usr/bin/true directly instead of through
      // bash: what commands.run costs without the shell.
      const rpc = (theLong().commands as unknown as { rpc: ProcessRpc }).rpc;
      const start = performance.now();
      for await (const e of rpc.start(
        { process: { cmd: '/usr/bin/true', args: [] }, stdin: false },
        { headers: { 'Keepalive-Ping-Interval': '50' } },
      )) {
        const event = e.event?.event;
        if (event?.case === 'end') {
          if (event.value.exitCode !== 0) throw new Error(`true exited ${event.value.exitCode}`);
          return since(start);
        }
      }
      throw new Error('process stream ended without an end event');
    }
    case 'write': {
      const sbx = theLong();
      data ??= new Uint8Array(await readFile(SOURCE));
      const start = performance.now();
      // An ArrayBuffer, the SDK's default path: multipart/form-data, as most callers send.
      await sbx.files.write(TARGET, data.buffer as ArrayBuffer);
      return since(start);
    }
    case 'writeOctet': {
      const sbx = theLong();
      data ??= new Uint8Array(await readFile(SOURCE));
      const start = performance.now();
      // The SDK's other upload mode (envd >= 0.5.7): the body is the file, no multipart framing.
      await sbx.files.write(TARGET, data.buffer as ArrayBuffer, { useOctetStream: true });
      return since(start);
    }
    case 'read': {
      const sbx = theLong();
      const start = performance.now();
      const back = await sbx.files.read(TARGET, { format: 'bytes' });
      const ms = since(start);
      if (back.length !== data?.length) throw new Error(`read ${back.length} bytes, wrote ${data?.length}`);
      return ms;
    }
    case 'close':
      if (long) await long.kill().catch(() => undefined);
      long = undefined;
      return null;
  }
}

serveParent(handle);
