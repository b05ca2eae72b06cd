import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { McpDeps, McpSession } from './deps.ts';
import { Job } from './jobs.ts';
import { guarded, json, type ToolExtra } from './result.ts';

const sandboxId = z.string().min(1).max(128).describe('The sandbox id (from sandbox_create or sandbox_list)');
const pid = z.number().int().positive().describe('The pid run_command returned for a background command');
/** A progress notification carries at most this much of a chunk of output. */
const MAX_PROGRESS_TEXT = 8192;

/** run_command, read_command_output and kill_command: commands through manager.exec. */
export function registerCommandTools(server: McpServer, deps: McpDeps, session: McpSession): void {
  const { manager, log } = deps;

  server.registerTool(
    'run_command',
    {
      title: 'Run a command',
      description:
        'Runs a shell command in a sandbox as `bash -l -c <command>` and returns its stdout, stderr and ' +
        'exit code (a non-zero exit is a result, not an error). Output is kept up to the last 1 MiB per ' +
        'stream. While it runs, output chunks are sent as progress notifications when the client asks ' +
        'for progress; cancelling the request kills the command. With `background: true` it returns at ' +
        'once with a pid: read the output later with read_command_output, stop it with kill_command.',
      inputSchema: {
        sandboxId,
        command: z.string().min(1).max(131_072).describe('The shell command line'),
        cwd: z.string().max(4096).optional().describe("Working directory (default: the user's home)"),
        envs: z.record(z.string(), z.string()).optional().describe('Environment variables for this command'),
        user: z
          .string()
          .max(64)
          .optional()
          .describe("User to run as (default: the template's, usually `user`)"),
        timeoutSeconds: z
          .number()
          .int()
          .min(0)
          .max(86_400)
          .optional()
          .describe('Kill the command after this many seconds; 0 = never (default: 60, background: never)'),
        background: z.boolean().optional().describe('Return at once with a pid instead of waiting'),
      },
    },
    guarded(log, 'run_command', async (args, extra: ToolExtra) => {
      const job = new Job();
      const progressToken = extra._meta?.progressToken;
      let streamed = 0;
      const proc = await manager.exec(
        args.sandboxId,
        {
          argv: ['/bin/bash', '-l', '-c', args.command],
          ...(args.user !== undefined && { user: args.user }),
          ...(args.cwd !== undefined && { cwd: args.cwd }),
          env: args.envs ?? {},
        },
        {
          onData: (stream, data) => {
            (stream === 'stderr' ? job.stderr : job.stdout).push(data);
            if (progressToken === undefined || args.background || !job.running) return;
            streamed += data.length;
            extra
              .sendNotification({
                method: 'notifications/progress',
                params: {
                  progressToken,
                  progress: streamed,
                  message: `${stream}: ${data.subarray(0, MAX_PROGRESS_TEXT).toString('utf8')}`,
                },
              })
              .catch(() => undefined); // the client left; the command's own result says the rest
          },
          onExit: (exit) => job.ended(exit),
          onDetach: (err) => job.ended(undefined, `output lost: ${err.message}`),
        },
      );
      job.process = proc;
      const kill = () => void proc.signal('SIGKILL').catch(() => undefined);
      const timeoutSeconds = args.timeoutSeconds ?? (args.background ? 0 : 60);
      if (timeoutSeconds > 0) {
        const timer = setTimeout(() => {
          job.timedOut = true;
          kill();
        }, timeoutSeconds * 1000);
        timer.unref();
        void job.done.then(() => clearTimeout(timer));
      }
      if (args.background) {
        session.jobs.add(args.sandboxId, proc.pid, job);
        return json({ sandboxId: args.sandboxId, pid: proc.pid, running: job.running });
      }
      extra.signal.addEventListener('abort', kill, { once: true });
      await job.done;
      extra.signal.removeEventListener('abort', kill);
      return json(job.report());
    }),
  );

  server.registerTool(
    'read_command_output',
    {
      title: 'Read a background command',
      description:
        'The output so far (last 1 MiB per stream) of a command started with run_command ' +
        '`background: true`, whether it still runs, and its exit code once it ended. With ' +
        '`waitSeconds` it first waits up to that long for the command to end.',
      inputSchema: {
        sandboxId,
        pid,
        waitSeconds: z.number().min(0).max(600).optional().describe('Wait up to this long for the exit'),
      },
    },
    guarded(log, 'read_command_output', async (args, extra: ToolExtra) => {
      const job = findJob(args.sandboxId, args.pid);
      if (args.waitSeconds && job.running) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          job.done,
          new Promise<void>((resolve) => {
            timer = setTimeout(resolve, args.waitSeconds! * 1000);
            extra.signal.addEventListener('abort', () => resolve(), { once: true });
          }),
        ]);
        clearTimeout(timer);
      }
      return json(job.report());
    }),
  );

  server.registerTool(
    'kill_command',
    {
      title: 'Kill a background command',
      description:
        'Kills (SIGKILL, with its process group) a command started with run_command `background: true`.',
      inputSchema: { sandboxId, pid },
    },
    guarded(log, 'kill_command', async (args) => {
      const job = findJob(args.sandboxId, args.pid);
      if (job.running) await job.process?.signal('SIGKILL');
      return json({ sandboxId: args.sandboxId, pid: args.pid, killed: true });
    }),
  );

  function findJob(id: string, pid: number): Job {
    manager.get(id); // an unknown sandbox says so, rather than "no such command"
    const job = session.jobs.get(id, pid);
    if (!job) throw new CoveError('not_found', `no background command with pid ${pid} in sandbox ${id}`);
    return job;
  }
}
