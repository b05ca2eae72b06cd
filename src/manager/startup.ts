import { connect } from 'node:net';
import type { AgentClient, AgentProcess, ProcessHandlers } from '../agent-channel/client.ts';
import { CoveError } from '../core/errors.ts';
import type { Template, TemplateStart } from '../templates/index.ts';
import { spawnOptions } from './exec.ts';
import { readUserDb, resolveUser } from './users.ts';

/**
 * Where a claimed pooled sandbox finds its sandbox-wide env vars (E2B `envs` at create). Its
 * server started before the claim, so it cannot have them in its environment; E2B's server
 * asks envd's `GET /envs` on localhost, but Cove's envd is on the host, which a sandbox never
 * reaches. The code interpreter server reads this file at each context's first execution.
 */
export const SANDBOX_ENV_FILE = '/run/cove/env.json';

/** Starts a template's server in a sandbox just built (see runTemplateStart). */
export async function startTemplateServer(
  agent: AgentClient,
  template: Template & { start: TemplateStart },
  envVars: Record<string, string>,
  address: string,
): Promise<void> {
  const { passwd, group } = await readUserDb(agent);
  const who = resolveUser(template.start.user ?? template.defaultUser.name, passwd, group);
  await runTemplateStart({
    start: template.start,
    address,
    spawn: (argv, handlers) => agent.spawn(spawnOptions(template, who, envVars, { argv }), handlers),
    readLog: async () => {
      let tail = Buffer.alloc(0); // the log may be long: only its end is kept
      for await (const chunk of agent.readFile(template.start.log, { uid: 0, gid: 0 }))
        tail = Buffer.concat([tail, chunk]).subarray(-16384);
      return lastLines(tail.toString('utf8'));
    },
  });
}

/** Hands a claimed sandbox's env vars to its already running server (SANDBOX_ENV_FILE). */
export async function shareSandboxEnv(agent: AgentClient, envVars: Record<string, string>): Promise<void> {
  if (Object.keys(envVars).length === 0) return;
  const root = { uid: 0, gid: 0 };
  await agent.mkdir('/run/cove', root);
  await agent.writeFile(SANDBOX_ENV_FILE, Buffer.from(JSON.stringify(envVars)), root);
}

/**
 * A template's `start` (templates/README.md): the server a sandbox of it must run. A sandbox
 * has no init system (the agent is PID 1), so the manager starts it right after create, in
 * the background, and create returns once it is ready.
 */
export interface StartInput {
  start: TemplateStart;
  /** The sandbox's address: the readiness probe connects to it from the host. */
  address: string;
  /**
   * Runs argv in the sandbox as the template's user, in its home, with the sandbox's
   * environment (the manager's exec).
   */
  spawn: (argv: string[], handlers: ProcessHandlers) => Promise<AgentProcess>;
  /** The last lines of the command's log, for the error when it fails (best effort). */
  readLog: () => Promise<string>;
  /** How often the port is tried. */
  probeEveryMs?: number;
}

/**
 * Starts the command with its output appended to its log (inside the sandbox, so that it
 * survives Cove's restarts) and waits until `readyPort` accepts a TCP connection on the
 * sandbox's address. Rejects with CoveError('unavailable') when the command exits first or
 * the port stays closed for `readyTimeoutMs`; the caller then removes the sandbox. The command
 * keeps running after this resolves; nothing here stops it (it dies with its sandbox).
 */
export async function runTemplateStart(input: StartInput): Promise<void> {
  const { start } = input;
  let exited: { exitCode: number; signal?: string } | undefined;
  // `sh -c SCRIPT LOG`: the log path arrives as $0, never spliced into the script.
  const script = `exec >>"$0" 2>&1 </dev/null\n${start.command}`;
  await input.spawn(['/bin/sh', '-c', script, start.log], {
    onData: () => {}, // the script's own output went to its log
    onExit: (r) => (exited = r),
  });
  if (start.readyCmd !== undefined) return waitReadyCmd(input, start.readyCmd, () => exited);
  if (start.readyPort === undefined) return;
  const deadline = Date.now() + start.readyTimeoutMs;
  const every = input.probeEveryMs ?? 20;
  for (;;) {
    if (await portOpen(input.address, start.readyPort, Math.min(1000, start.readyTimeoutMs))) return;
    const why =
      exited !== undefined
        ? `exited (${exited.signal ?? `status ${exited.exitCode}`}) before port ${start.readyPort} opened`
        : Date.now() >= deadline
          ? `did not open port ${start.readyPort} within ${start.readyTimeoutMs} ms`
          : undefined;
    if (why !== undefined) await startFailed(input, why);
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

/**
 * E2B's `readyCmd` (templates built with the SDK): the command is run in the sandbox, as the
 * start command's user, until it exits 0; the start command exiting first, or the deadline,
 * fails the create with the end of the start command's log.
 */
async function waitReadyCmd(
  input: StartInput,
  readyCmd: string,
  exited: () => { exitCode: number; signal?: string } | undefined,
): Promise<void> {
  const { start } = input;
  const deadline = Date.now() + start.readyTimeoutMs;
  const every = input.probeEveryMs ?? 20;
  for (;;) {
    const code = await new Promise<number>((resolve, reject) => {
      input
        .spawn(['/bin/sh', '-c', readyCmd], { onData: () => {}, onExit: (r) => resolve(r.exitCode) })
        .catch(reject);
    });
    if (code === 0) return;
    const ended = exited();
    const why =
      ended !== undefined && (ended.exitCode !== 0 || ended.signal !== undefined)
        ? `exited (${ended.signal ?? `status ${ended.exitCode}`}) before the ready command succeeded`
        : Date.now() >= deadline
          ? `was not ready within ${start.readyTimeoutMs} ms (the ready command \`${readyCmd}\` last exited ${code})`
          : undefined;
    if (why !== undefined) await startFailed(input, why);
    await new Promise((resolve) => setTimeout(resolve, Math.max(every, 100)));
  }
}

/** Fails a create whose start command did not get ready, with the end of its log. */
async function startFailed(input: StartInput, why: string): Promise<never> {
  const tail = await input.readLog().catch(() => '');
  throw new CoveError(
    'unavailable',
    `the template's start command ${why}${tail ? `; the end of ${input.start.log}:\n${tail}` : ''}`,
  );
}

/** Whether a TCP connection to host:port succeeds within timeoutMs (closed at once if so). */
export function portOpen(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** The last `lines` lines of a text, for error messages. */
export function lastLines(text: string, lines = 20): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
