import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { Manager } from '../src/manager/manager.ts';
import type { BurstReply, BurstRequest } from './burst-client.ts';
import { summarize, type Summary } from './stats.ts';

export interface BurstResult {
  creates: number;
  processes: number;
  clientsPerProcess: number;
  succeeded: number;
  failed: number;
  /** The first few distinct errors, for the report. */
  errors: string[];
  retries429: number;
  /** From the first create sent to the last answered, ms (the processes start together). */
  wallMs: number;
  createsPerSec: number;
  perCreate: Summary;
  /** manager.list().length right after the burst: must equal `succeeded` (none lost). */
  listed: number;
  /** Killing them all (8 at a time, in process), ms. */
  killMs: number;
  killFailures: number;
  samples: number[];
}

/**
 * 1000 (or `creates`) `Sandbox.create()` from `processes` × `clientsPerProcess` concurrent SDK
 * clients, in child processes (bench/burst-client.ts) so that none shares the server's event
 * loop. Then counts the sandboxes the manager lists and kills them all.
 */
export async function runBurst(opts: {
  url: string;
  apiKey: string;
  manager: Manager;
  creates: number;
  processes: number;
  clientsPerProcess: number;
  progress: (msg: string) => void;
}): Promise<BurstResult> {
  const before = opts.manager.list().length;
  const children: ChildProcess[] = [];
  const replies: BurstReply[] = [];
  try {
    const ready: Array<Promise<void>> = [];
    for (let i = 0; i < opts.processes; i++) {
      const child = fork(join(import.meta.dirname, 'burst-client.ts'), [], {
        env: {
          ...process.env,
          E2B_API_URL: opts.url,
          E2B_SANDBOX_URL: opts.url,
          E2B_API_KEY: opts.apiKey,
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      children.push(child);
      ready.push(
        new Promise<void>((resolve, reject) => {
          child.once('message', () => resolve());
          child.once('exit', (code) =>
            reject(new Error(`burst client exited (${code}) before it was ready`)),
          );
        }),
      );
    }
    await Promise.all(ready);
    const share = (i: number) =>
      Math.floor(opts.creates / opts.processes) + (i < opts.creates % opts.processes ? 1 : 0);
    const start = performance.now();
    const done = children.map(
      (child, i) =>
        new Promise<BurstReply>((resolve, reject) => {
          child.once('message', (reply: BurstReply) => resolve(reply));
          child.once('exit', (code) => reject(new Error(`burst client exited (${code})`)));
          child.send({
            clients: opts.clientsPerProcess,
            creates: share(i),
            timeoutMs: 3600_000,
          } satisfies BurstRequest);
        }),
    );
    const ticker = setInterval(
      () => opts.progress(`  burst: ${opts.manager.list().length - before} sandboxes listed`),
      10_000,
    );
    try {
      replies.push(...(await Promise.all(done)));
    } finally {
      clearInterval(ticker);
    }
    const wallMs = performance.now() - start;
    const listed = opts.manager.list().length - before;
    const samples = replies.flatMap((r) => r.samples);
    const errors = replies.flatMap((r) => r.errors);

    opts.progress(`  burst: ${samples.length} created in ${(wallMs / 1000).toFixed(1)} s; killing them`);
    const killStart = performance.now();
    const ids = opts.manager.list().map((s) => s.id);
    let killFailures = 0;
    let k = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (k < ids.length) {
          const id = ids[k++]!;
          await opts.manager.kill(id).catch(() => killFailures++);
        }
      }),
    );
    const killMs = performance.now() - killStart;

    return {
      creates: opts.creates,
      processes: opts.processes,
      clientsPerProcess: opts.clientsPerProcess,
      succeeded: samples.length,
      failed: errors.length,
      errors: [...new Set(errors)].slice(0, 5),
      retries429: replies.reduce((n, r) => n + r.retries429, 0),
      wallMs,
      createsPerSec: samples.length / (wallMs / 1000),
      perCreate: summarize(samples),
      listed,
      killMs,
      killFailures,
      samples,
    };
  } finally {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill();
  }
}
