import { Command, Option } from 'commander';
import type { AuditEvent } from '../audit/index.ts';
import type { createClient } from './client.ts';

type Client = ReturnType<typeof createClient>;

/**
 * What sandboxes wrote (paths, command lines, output) reaches the terminal here: C0 and C1
 * control characters are shown escaped, never interpreted (an ESC could rewrite the screen).
 */
export function printable(text: string): string {
  let out = '';
  for (const c of text) {
    const n = c.charCodeAt(0);
    out += n < 0x20 || (n >= 0x7f && n <= 0x9f) ? `\\x${n.toString(16).padStart(2, '0')}` : c;
  }
  return out;
}

function details(fields: AuditEvent['fields']): string {
  return Object.entries(fields)
    .map(([k, v]) => `${k}=${printable(typeof v === 'string' ? v : JSON.stringify(v))}`)
    .join(' ');
}

/** One event per line: time, sandbox, action, outcome, key, then its fields as key=value. */
export function formatEvent(e: AuditEvent): string {
  return [
    new Date(e.at).toISOString(),
    (e.sandboxId ?? '-').padEnd(20),
    e.action.padEnd(14),
    e.outcome.padEnd(8),
    (e.keyId ?? '-').padEnd(8),
    details(e.fields),
  ].join('  ');
}

/** `cove audit`: the audit trail through `GET /cove/v1/audit`, as lines, JSON or JSON lines. */
export function auditCommand(client: () => Client): Command {
  return new Command('audit')
    .description('show the audit trail: what was done to and in sandboxes, by which key')
    .option('--sandbox <id>', 'only this sandbox')
    .option('--key <id>', 'only this API key (its id, as `cove keys list` shows)')
    .option('--action <prefix>', 'only actions starting so (process., file.write, sandbox.kill, api)')
    .option('--since <time>', 'from this time (ISO 8601 or epoch ms)')
    .option('--until <time>', 'up to this time (ISO 8601 or epoch ms)')
    .addOption(new Option('--jsonl', 'export as JSON lines').conflicts(['json', 'follow']))
    .option('--json', 'one JSON page (add --after to page on)')
    .option('--after <seq>', 'records after this sequence number')
    .option('-f, --follow', 'keep printing new records as they come')
    .action(
      async (o: {
        sandbox?: string;
        key?: string;
        action?: string;
        since?: string;
        until?: string;
        jsonl?: boolean;
        json?: boolean;
        after?: string;
        follow?: boolean;
      }) => {
        const query = new URLSearchParams();
        for (const [name, value] of [
          ['sandbox', o.sandbox],
          ['key', o.key],
          ['action', o.action],
          ['since', o.since],
          ['until', o.until],
          ['after', o.after],
        ] as const)
          if (value !== undefined) query.set(name, value);
        if (o.jsonl) {
          query.set('format', 'jsonl');
          const res = await client().request('GET', `/cove/v1/audit?${query.toString()}`);
          for await (const chunk of res.body ?? []) process.stdout.write(chunk as Uint8Array);
          return;
        }
        if (o.json) {
          const page = await client().json<unknown>('GET', `/cove/v1/audit?${query.toString()}`);
          return void process.stdout.write(JSON.stringify(page, null, 2) + '\n');
        }
        for (;;) {
          const page = await client().json<{ events: AuditEvent[]; next?: number }>(
            'GET',
            `/cove/v1/audit?${query.toString()}`,
          );
          for (const e of page.events) process.stdout.write(formatEvent(e) + '\n');
          const last = page.events.at(-1);
          if (last) query.set('after', String(last.seq));
          if (page.next !== undefined) continue;
          if (!o.follow) return;
          await new Promise((resolve) => setTimeout(resolve, 1000));
        }
      },
    );
}
