import { createWriteStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import type { createClient } from './client.ts';
import { printTable } from './table.ts';

type Client = ReturnType<typeof createClient>;

interface Database {
  databaseID: string;
  name: string;
  createdAt: string;
  url?: string;
}

/** `cove db create|list|delete|backup`: the calling key's PostgreSQL databases (docs/runtime-services.md). */
export function dbCommands(client: () => Client): Command {
  const cmd = new Command('db').description(
    "create, list, back up and delete agents' PostgreSQL databases (sandboxes get one with --database)",
  );
  const path = (name: string) => `/databases/${encodeURIComponent(name)}`;

  cmd
    .command('create <name>')
    .description('create a database and print the URL its sandboxes get (DATABASE_URL)')
    .option('--max-size-mb <n>', "its size limit (default and most: the server's COVE_DATABASES_MAX_MB)")
    .action(async (name: string, o: { maxSizeMb?: string }) => {
      const d = await client().json<Database>('POST', '/databases', {
        name,
        ...(o.maxSizeMb !== undefined && { maxSizeMB: Number(o.maxSizeMb) }),
      });
      process.stdout.write(`${d.url}\n`);
      process.stderr.write(`created ${d.name} (${d.databaseID}); cove sandbox create --database ${d.name}\n`);
    });

  cmd
    .command('list')
    .description("list this key's databases")
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await client().json<Database[]>('GET', '/databases');
      if (o.json) return void process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      printTable([['ID', 'NAME', 'CREATED'], ...list.map((d) => [d.databaseID, d.name, d.createdAt])]);
    });

  cmd
    .command('delete <name>')
    .description('delete a database and its data (its open connections are ended)')
    .action(async (name: string) => {
      await client().request('DELETE', path(name));
    });

  cmd
    .command('backup <name>')
    .description('pg_dump the database: plain SQL, or --format custom for POST /databases/<name>/restore')
    .option('-o, --output <file>', 'write to this file instead of stdout')
    .option('--format <format>', 'plain (SQL) or custom (pg_restore archive)', 'plain')
    .action(async (name: string, o: { output?: string; format: string }) => {
      const res = await client().request(
        'GET',
        `${path(name)}/backup?format=${encodeURIComponent(o.format)}`,
      );
      const body = Readable.fromWeb(res.body!);
      await pipeline(body, o.output ? createWriteStream(o.output, { mode: 0o600 }) : process.stdout);
    });

  return cmd;
}
