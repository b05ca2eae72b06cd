#!/usr/bin/env node
import { Command, Option } from 'commander';
import { clientApiKey, loadConfig, serverUrl } from '../config/config.ts';
import { CoveError, exitStatus } from '../core/errors.ts';
import { auditCommand } from './audit.ts';
import { clusterCommands } from '../cluster/cli.ts';
import { createClient } from './client.ts';
import { dbCommands } from './db.ts';
import { doctorCommand } from './doctor.ts';
import { quotaCommands } from './quota.ts';
import { keyCommands } from './keys.ts';
import { sandboxCommands } from './sandbox.ts';
import { templateCommands } from './template.ts';

const program = new Command('cove').description('Cove: sandboxes for AI agents, speaking the E2B protocol');

program
  .command('serve')
  .description('serve the API and the sandboxes on this host (builds the base template on first run)')
  .addOption(new Option('--port <port>', 'port to listen on').argParser(Number))
  .option('--host <address>', 'address to listen on')
  .option('--home <dir>', 'state directory')
  .option(
    '--domain <domain>',
    'sandbox ports are served at <port>-<id>.<domain> (default: localhost:<port>, resolved by curl and browsers)',
  )
  .addOption(
    new Option('--tls <mode>', 'serve HTTPS with a local CA and wildcard certificate').choices([
      'self-signed',
    ]),
  )
  .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (chain) for the domain and *.<domain>')
  .option('--tls-key <file>', 'the PEM private key of --tls-cert')
  .addOption(
    new Option(
      '--runtime <name>',
      'default runtime of sandboxes: crun, runsc for gVisor, or microvm for a QEMU VM each (docs/runtimes.md; without usable KVM microVMs are emulated, slow for heavy computation: cove doctor says which)',
    ).choices(['crun', 'runsc', 'microvm']),
  )
  .option('--require-kvm', 'refuse the microvm backend where the host has no usable hardware KVM')
  .action(async (opts: ServeOptions) => {
    const { startCove } = await import('../main.ts');
    const { trustHints } = await import('../gateway/tls.ts');
    const config = loadConfig({
      ...(opts.port !== undefined && { port: opts.port }),
      ...(opts.host && { host: opts.host }),
      ...(opts.home && { home: opts.home }),
      ...(opts.domain && { domain: opts.domain }),
      ...(opts.tls && { tls: opts.tls }),
      ...(opts.tlsCert && { tlsCert: opts.tlsCert }),
      ...(opts.tlsKey && { tlsKey: opts.tlsKey }),
      ...(opts.runtime && { runtime: opts.runtime }),
      ...(opts.requireKvm && { requireKvm: true }),
    });
    const cove = await startCove(config, { ensureTemplates: ['base'] });
    const { adopted, removed, orphans } = cove.reconciled;
    const scheme = cove.tls ? 'https' : 'http';
    // With TLS the SDK's own https URLs work: E2B_DOMAIN alone names the API and every sandbox.
    const clientEnv = cove.tls
      ? `export E2B_DOMAIN=${cove.domain}\n` +
        (cove.tls.caFile ? `export NODE_EXTRA_CA_CERTS=${cove.tls.caFile}\n` : '')
      : `export E2B_API_URL=${cove.url}\nexport E2B_SANDBOX_URL=${cove.url}\n`;
    // One write: a reader of the pipe (test/helpers.ts) gets the URL and the key together.
    process.stdout.write(
      `Cove is serving on ${cove.url}\n` +
        `  servers in sandboxes: ${scheme}://<port>-<id>.${cove.domain} (or E2b-Sandbox-Id/-Port headers)\n` +
        (cove.tls ? `  API: https://api.${cove.domain}\n` + trustHints(cove.tls, cove.domain) : '') +
        (cove.warnings ?? []).map((w) => `  warning: ${w}\n`).join('') +
        `  adopted ${adopted.length} running sandboxes, removed ${removed.length} dead ones and ${orphans.length} orphans\n` +
        (cove.apiKey
          ? `  a first API key was made; it is shown only this once (more: cove keys create). For the E2B SDK and the CLI:\n` +
            clientEnv +
            `export E2B_API_KEY=${cove.apiKey}\n`
          : `  API keys: cove keys list | create\n`) +
        `  try: npx cove sandbox create && npx cove sandbox list\n`,
    );
    const stop = () => {
      cove.log.info('stopping; sandboxes keep running and are adopted at the next start');
      void cove.close().then(() => process.exit(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });

interface ServeOptions {
  port?: number;
  host?: string;
  home?: string;
  domain?: string;
  tls?: string;
  tlsCert?: string;
  tlsKey?: string;
  runtime?: string;
  requireKvm?: boolean;
}

program
  .command('mcp')
  .description(
    'serve MCP over stdio for clients that spawn servers (Claude Desktop, Cursor), relayed to the running Cove (COVE_URL, COVE_API_KEY or E2B_API_KEY)',
  )
  .action(async () => {
    const { runStdioBridge } = await import('../mcp/stdio.ts');
    await runStdioBridge({ url: serverUrl(), apiKey: clientApiKey() });
    process.exit(0);
  });

program.addCommand(sandboxCommands(() => createClient(serverUrl(), clientApiKey())));
program.addCommand(
  templateCommands(
    () => createClient(serverUrl(), clientApiKey()),
    () => ({ url: serverUrl(), apiKey: clientApiKey() }),
  ),
);
program.addCommand(keyCommands());
program.addCommand(doctorCommand());
program.addCommand(dbCommands(() => createClient(serverUrl(), clientApiKey())));
program.addCommand(quotaCommands(() => createClient(serverUrl(), clientApiKey())));
program.addCommand(auditCommand(() => createClient(serverUrl(), clientApiKey())));
for (const command of clusterCommands()) program.addCommand(command);

program.parseAsync().catch((err: unknown) => {
  if (err instanceof CoveError) {
    process.stderr.write(`cove: ${err.message}\n`);
    process.exit(exitStatus[err.code]);
  }
  process.stderr.write(`cove: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
