import { Command } from 'commander';
import { printable } from './audit.ts';
import type { createClient } from './client.ts';

type Client = ReturnType<typeof createClient>;

interface Entry {
  timestamp: string;
  level: string;
  message: string;
  fields: Record<string, string>;
}

/**
 * `cove sandbox logs <id> [--follow]`: the sandbox's log through E2B's v2 logs endpoint
 * (spec 2.13), oldest first; --follow asks again every second from the last timestamp seen
 * (the cursor is inclusive: entries at that very millisecond already printed are skipped).
 */
export function logsCommand(client: () => Client): Command {
  return new Command('logs')
    .description("print a sandbox's log: its lifecycle, its start command's output, its runtime's errors")
    .argument('<id>', 'sandbox id')
    .option('-f, --follow', 'keep printing new lines until the sandbox is gone')
    .action(async (id: string, o: { follow?: boolean }) => {
      let cursor = 0;
      let seenAtCursor = 0;
      for (;;) {
        const query = new URLSearchParams({ cursor: String(cursor), direction: 'forward', limit: '1000' });
        const { logs } = await client().json<{ logs: Entry[] }>(
          'GET',
          `/v2/sandboxes/${encodeURIComponent(id)}/logs?${query.toString()}`,
        );
        let skip = seenAtCursor;
        for (const e of logs) {
          const at = Date.parse(e.timestamp);
          if (at === cursor && skip > 0) {
            skip--;
            continue;
          }
          const fields = Object.entries(e.fields)
            .map(([k, v]) => ` ${k}=${printable(v)}`)
            .join('');
          process.stdout.write(`${e.timestamp} ${e.level.padEnd(5)} ${printable(e.message)}${fields}\n`);
          seenAtCursor = at === cursor ? seenAtCursor + 1 : 1;
          cursor = at;
        }
        if (!o.follow) return;
        if (logs.length === 1000) continue;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    });
}
