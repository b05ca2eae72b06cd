import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { CoveError } from '../core/errors.ts';
import type { createClient } from './client.ts';
import { printTable } from './table.ts';
import { importCommand } from './template-import.ts';

type Client = ReturnType<typeof createClient>;

interface Listed {
  name: string;
  tag: string;
  source: 'recipe' | 'api';
  build: string;
  builtAt: string;
  diskBytes: number;
}

function size(bytes: number): string {
  return bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : `${Math.round(bytes / 2 ** 20)} MiB`;
}

/**
 * `cove template build|list|delete`. A build goes through the `e2b` SDK's own Template builder
 * (it parses the Dockerfile into the same steps, hashes and uploads the files, and follows the
 * build's log), pointed at this Cove: the CLI and the SDK build exactly alike.
 */
export function templateCommands(
  client: () => Client,
  server: () => { url: string; apiKey?: string },
): Command {
  const cmd = new Command('template').description('build, list and delete templates');

  cmd
    .command('build')
    .description(
      'build a template from a Dockerfile (FROM base, e2bdev/base, debian:<suite> or a Cove template)',
    )
    .requiredOption('--name <name[:tag]>', 'template name, with an optional tag (default tag: default)')
    .option('-f, --file <Dockerfile>', 'the Dockerfile', 'Dockerfile')
    .option('--tag <tag...>', 'more tags for the build')
    .addOption(new Option('--cpu <count>', 'CPUs of its sandboxes').argParser(Number))
    .addOption(new Option('--memory <MiB>', 'memory of its sandboxes').argParser(Number))
    .option('--start-cmd <command>', 'a command every sandbox starts (needs --ready-cmd)')
    .option('--ready-cmd <command>', 'create returns once this command exits 0')
    .option('--no-cache', 'run every step again')
    .argument('[context]', 'folder that COPY reads from', '.')
    .action(
      async (
        context: string,
        o: {
          name: string;
          file: string;
          tag?: string[];
          cpu?: number;
          memory?: number;
          startCmd?: string;
          readyCmd?: string;
          cache: boolean;
        },
      ) => {
        const { url, apiKey } = server();
        // The SDK reads its API URL from the environment only.
        process.env.E2B_API_URL = url;
        const sdk = await import('e2b').catch((err: unknown) => {
          throw new CoveError('unavailable', 'the e2b SDK is not installed: run npm ci in the checkout', {
            cause: err,
          });
        });
        const dockerfile = await readFile(resolve(o.file), 'utf8');
        let t = sdk.Template({ fileContextPath: resolve(context) }).fromDockerfile(dockerfile);
        if (o.startCmd) {
          if (!o.readyCmd) throw new CoveError('invalid_argument', '--start-cmd needs --ready-cmd');
          t = t.setStartCmd(o.startCmd, o.readyCmd) as typeof t;
        }
        await sdk.Template.build(t, o.name, {
          ...(apiKey && { apiKey }),
          ...(o.tag && { tags: o.tag }),
          ...(o.cpu !== undefined && { cpuCount: o.cpu }),
          ...(o.memory !== undefined && { memoryMB: o.memory }),
          skipCache: !o.cache,
          onBuildLogs: sdk.defaultBuildLogger(),
        });
      },
    );

  cmd.addCommand(importCommand(client));

  cmd
    .command('list')
    .description('list templates, their tags and the disk their builds use')
    .option('--json', 'print JSON')
    .action(async (o: { json?: boolean }) => {
      const list = await client().json<Listed[]>('GET', '/cove/v1/templates');
      if (o.json) return void process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      const rows = [['NAME', 'TAG', 'SOURCE', 'BUILD', 'BUILT', 'DISK']];
      for (const t of list) rows.push([t.name, t.tag, t.source, t.build, t.builtAt, size(t.diskBytes)]);
      printTable(rows);
      process.stdout.write('(disk: each build counted alone; builds share the files they have in common)\n');
    });

  cmd
    .command('delete')
    .description('delete a template (name) or one of its tags (name:tag); running sandboxes keep theirs')
    .argument('<name>', 'template name or name:tag')
    .action(async (ref: string) => {
      const [name, tag] = ref.split(':');
      if (tag) await client().request('DELETE', '/templates/tags', { name, tags: [tag] });
      else await client().request('DELETE', `/templates/${encodeURIComponent(ref)}`);
    });

  return cmd;
}
