import { Command, Option } from 'commander';
import { CoveError, exitStatus, type ErrorCode } from '../core/errors.ts';
import type { createClient } from './client.ts';
import { printTable } from './table.ts';
import { logsCommand } from './logs.ts';

type Client = ReturnType<typeof createClient>;

interface Detail {
  sandboxID: string;
  templateID: string;
  state: string;
  startedAt: string;
  endAt: string;
  cpuCount: number;
  memoryMB: number;
}

function pairs(value: string, previous: Record<string, string> = {}): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new CoveError('invalid_argument', `expected KEY=VALUE, got ${value}`);
  return { ...previous, [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** `cove sandbox create|list|exec|kill`: the manager's methods over the HTTP API. */
export function sandboxCommands(client: () => Client): Command {
  const cmd = new Command('sandbox').description('create, list, run commands in and kill sandboxes');

  cmd
    .command('create')
    .description('create a sandbox and print its id')
    .option('--template <name>', 'template', 'base')
    .addOption(
      new Option('--timeout <seconds>', 'seconds until the sandbox is killed').default(300).argParser(Number),
    )
    .option('--metadata <key=value>', 'metadata (repeatable)', pairs)
    .option('--env <key=value>', 'environment of every process (repeatable)', pairs)
    .option('--database <name>', 'give it this database as DATABASE_URL (metadata cove-database; cove db)')
    .action(
      async (o: {
        template: string;
        timeout: number;
        metadata?: Record<string, string>;
        env?: Record<string, string>;
        database?: string;
      }) => {
        const created = await client().json<{ sandboxID: string }>('POST', '/v2/sandboxes', {
          templateID: o.template,
          timeout: o.timeout,
          metadata: o.database ? { ...o.metadata, 'cove-database': o.database } : o.metadata,
          envVars: o.env,
        });
        process.stdout.write(`${created.sandboxID}\n`);
      },
    );

  cmd
    .command('list')
    .description('list running sandboxes')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await client().json<Detail[]>('GET', '/v2/sandboxes');
      if (o.json) return void process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      const rows = [['ID', 'TEMPLATE', 'STATE', 'STARTED', 'ENDS', 'CPU', 'MEMORY']];
      for (const s of list) {
        rows.push([
          s.sandboxID,
          s.templateID,
          s.state,
          s.startedAt,
          s.endAt,
          String(s.cpuCount),
          `${s.memoryMB} MiB`,
        ]);
      }
      printTable(rows);
    });

  cmd
    .command('exec')
    .description('run a command in a sandbox, stream its output and exit with its code')
    .argument('<id>', 'sandbox id')
    .argument('<command...>', 'the command and its arguments (after --)')
    .option('--user <name>', 'user to run as (default: the template user)')
    .option('--cwd <dir>', 'working directory')
    .option('--env <key=value>', 'environment variable (repeatable)', pairs)
    .action(
      async (
        id: string,
        argv: string[],
        o: { user?: string; cwd?: string; env?: Record<string, string> },
      ) => {
        const res = await client().request('POST', `/cove/v1/sandboxes/${encodeURIComponent(id)}/exec`, {
          argv,
          user: o.user,
          cwd: o.cwd,
          env: o.env,
        });
        process.exitCode = await streamExec(res);
      },
    );

  cmd
    .command('kill')
    .description('kill a sandbox')
    .argument('<id...>', 'sandbox ids')
    .action(async (ids: string[]) => {
      for (const id of ids) await client().request('DELETE', `/sandboxes/${encodeURIComponent(id)}`);
    });

  cmd.addCommand(logsCommand(client));

  return cmd;
}

/** Writes the NDJSON exec stream to stdout/stderr and returns the process's exit code. */
async function streamExec(res: Response): Promise<number> {
  const decoder = new TextDecoder();
  let buffered = '';
  let exitCode: number | undefined;
  for await (const chunk of res.body ?? []) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const event = JSON.parse(buffered.slice(0, nl)) as {
        type: string;
        data?: string;
        exitCode?: number;
        code?: string;
        message?: string;
      };
      buffered = buffered.slice(nl + 1);
      if (event.type === 'stdout') process.stdout.write(Buffer.from(event.data ?? '', 'base64'));
      else if (event.type === 'stderr') process.stderr.write(Buffer.from(event.data ?? '', 'base64'));
      else if (event.type === 'exit') exitCode = event.exitCode;
      else if (event.type === 'error') {
        const code = (event.code ?? 'internal') as ErrorCode;
        throw new CoveError(code in exitStatus ? code : 'internal', event.message ?? 'exec failed');
      }
    }
  }
  if (exitCode === undefined)
    throw new CoveError('unavailable', 'the exec stream ended before the process exited');
  return exitCode;
}
