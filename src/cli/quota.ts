import { Command, InvalidArgumentError } from 'commander';
import type { createClient } from './client.ts';

type Client = ReturnType<typeof createClient>;

/** A limit: a positive integer, or `none` to lift it. */
function limit(value: string): number | null {
  if (value === 'none') return null;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('a positive integer, or none');
  return n;
}

/** `cove quota get|set|clear <key id>`: a key's model-gateway quotas (its own, over services.json's). */
export function quotaCommands(client: () => Client): Command {
  const cmd = new Command('quota').description("read and set an API key's model-gateway quotas");
  const path = (id: string) => `/cove/v1/quotas/${encodeURIComponent(id)}`;
  const print = (q: unknown): void => void process.stdout.write(JSON.stringify(q, null, 2) + '\n');

  cmd
    .command('get <keyId>')
    .description("the limits in force (null: none) and the key's override")
    .action(async (id: string) => print(await client().json('GET', path(id))));

  cmd
    .command('set <keyId>')
    .description('give the key its own limits (an option left out keeps the configured limit)')
    .option('--rpm <n>', 'requests per minute, or none', limit)
    .option('--tokens-per-day <n>', 'model tokens per 24 hours, or none', limit)
    .action(async (id: string, o: { rpm?: number | null; tokensPerDay?: number | null }) =>
      print(
        await client().json('PUT', path(id), {
          ...(o.rpm !== undefined && { requestsPerMinute: o.rpm }),
          ...(o.tokensPerDay !== undefined && { tokensPerDay: o.tokensPerDay }),
        }),
      ),
    );

  cmd
    .command('clear <keyId>')
    .description('back to the configured limits')
    .action(async (id: string) => {
      await client().request('DELETE', path(id));
    });

  return cmd;
}
