import type { AgentProcess } from '../agent-channel/client.ts';
import type { ProcessExit } from '../manager/processes.ts';

/** How much of each stream a command keeps: the last MiB (older output is counted, not kept). */
export const MAX_OUTPUT = 2 ** 20;
/** Background commands remembered per server; beyond, the oldest finished ones are forgotten. */
const MAX_JOBS = 1024;

/** The last `max` bytes of a stream, and how many came before them. */
export class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  dropped = 0;
  private readonly max: number;

  constructor(max = MAX_OUTPUT) {
    this.max = max;
  }

  push(data: Buffer): void {
    this.chunks.push(data);
    this.size += data.length;
    while (this.size > this.max) {
      const first = this.chunks[0]!;
      const over = this.size - this.max;
      if (first.length <= over) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(over);
        this.size -= over;
        this.dropped += over;
      }
    }
  }

  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/**
 * One command run by `run_command`: its output so far and, once known, how it ended. `done`
 * resolves at the exit, or when the output stream ends without one (the sandbox went away).
 */
export class Job {
  readonly stdout = new Tail();
  readonly stderr = new Tail();
  exit: ProcessExit | undefined;
  /** Why the output ended without an exit. */
  lost: string | undefined;
  timedOut = false;
  process: AgentProcess | undefined;
  readonly done: Promise<void>;
  private finish!: () => void;

  constructor() {
    this.done = new Promise((resolve) => (this.finish = resolve));
  }

  ended(exit: ProcessExit | undefined, lost?: string): void {
    this.exit ??= exit;
    if (!exit) this.lost ??= lost;
    this.finish();
  }

  get running(): boolean {
    return this.exit === undefined && this.lost === undefined;
  }

  /** The answer of run_command and read_command_output. */
  report(): Record<string, unknown> {
    return {
      ...(this.process && { pid: this.process.pid }),
      running: this.running,
      ...(this.exit && { exitCode: this.exit.exitCode }),
      ...(this.exit?.signal !== undefined && { signal: this.exit.signal }),
      ...(this.timedOut && { timedOut: true }),
      ...(this.lost !== undefined && { error: this.lost }),
      stdout: this.stdout.text(),
      stderr: this.stderr.text(),
      ...((this.stdout.dropped > 0 || this.stderr.dropped > 0) && {
        droppedBytes: { stdout: this.stdout.dropped, stderr: this.stderr.dropped },
      }),
    };
  }
}

export type CommandJobs = ReturnType<typeof createCommandJobs>;

/** Background commands by sandbox and pid, shared by every session of one server (a client
 * that reconnects can still read what it started). Forgotten when their sandbox stops. */
export function createCommandJobs() {
  const jobs = new Map<string, Job>();
  const key = (sandboxId: string, pid: number) => `${sandboxId}/${pid}`;

  return {
    add(sandboxId: string, pid: number, job: Job): void {
      jobs.set(key(sandboxId, pid), job);
      for (const [k, j] of jobs) {
        if (jobs.size <= MAX_JOBS) break;
        if (!j.running) jobs.delete(k);
      }
    },
    get(sandboxId: string, pid: number): Job | undefined {
      return jobs.get(key(sandboxId, pid));
    },
    forgetSandbox(sandboxId: string): void {
      for (const k of jobs.keys()) if (k.startsWith(`${sandboxId}/`)) jobs.delete(k);
    },
  };
}
