import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { loadConfig } from '../config/config.ts';
import { CoveError } from '../core/errors.ts';
import { createKeyring, type Keyring } from '../keys/keys.ts';
import { printTable } from './table.ts';
import { createSqliteStore } from '../store/sqlite.ts';

/**
 * Opens the keys of the Cove whose state lives in `home`. The CLI works on the store itself,
 * not through an admin route: whoever can read the state directory owns that Cove anyway; an
 * admin route would need a credential of its own, and losing the last key would lock its
 * owner out. The server sees a change at its next request, since it checks every key against
 * the store, and SQLite's WAL lets the two processes share the file.
 */
function withKeyring<T>(home: string | undefined, use: (keys: Keyring) => T): T {
  const config = loadConfig(home ? { home } : {});
  if (!existsSync(config.home))
    throw new CoveError('not_found', `no Cove state at ${config.home} (pass --home or set COVE_HOME)`);
  const store = createSqliteStore(join(config.home, 'cove.db'));
  try {
    return use(createKeyring(store));
  } finally {
    store.close();
  }
}

const time = (ms: number | undefined) => (ms === undefined ? '-' : new Date(ms).toISOString());

/** `cove keys create|list|revoke`: the API keys of the Cove on this host. */
export function keyCommands(): Command {
  const cmd = new Command('keys').description('create, list and revoke API keys (on this host)');
  const home = (c: Command) => c.optsWithGlobals<{ home?: string }>().home;
  cmd.option('--home <dir>', 'state directory (default: COVE_HOME or /var/lib/cove)');

  cmd
    .command('create')
    .description('create an API key and print it: it is shown only this once')
    .option('--name <name>', 'what the key is for', 'default')
    .action((o: { name: string }, c: Command) => {
      const { key, record } = withKeyring(home(c), (keys) => keys.create(o.name));
      process.stdout.write(`${key}\n`);
      process.stderr.write(`created ${record.id} (${record.name}); store it now, it cannot be shown again\n`);
    });

  cmd
    .command('list')
    .description('list API keys (never the keys themselves)')
    .option('--json', 'print JSON')
    .action((o: { json?: boolean }, c: Command) => {
      const list = withKeyring(home(c), (keys) => keys.list()).map(({ hash: _, ...k }) => k);
      if (o.json) return void process.stdout.write(JSON.stringify(list, null, 2) + '\n');
      const rows = [['ID', 'NAME', 'KEY', 'CREATED', 'LAST USED']];
      for (const k of list) rows.push([k.id, k.name, k.mask, time(k.createdAt), time(k.lastUsedAt)]);
      printTable(rows);
    });

  cmd
    .command('revoke')
    .description('revoke API keys by id: requests that present them fail from then on')
    .argument('<id...>', 'key ids (cove keys list)')
    .action((ids: string[], _o: unknown, c: Command) => {
      const gone = new Set<string>();
      withKeyring(home(c), (keys) => {
        for (const id of ids) if (!gone.has(id)) for (const k of keys.revoke(id)) gone.add(k);
      });
      const more = [...gone].filter((k) => !ids.includes(k));
      // Keys minted through the API go with the key that minted them (src/keys/keys.ts).
      if (more.length) process.stderr.write(`also revoked, made by those keys: ${more.join(' ')}\n`);
    });

  return cmd;
}
