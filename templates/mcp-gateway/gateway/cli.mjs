#!/usr/bin/env node
// `mcp-gateway --config '<json>'`, as the E2B SDK runs it after creating the sandbox (as root,
// GATEWAY_ACCESS_TOKEN in the environment; spec 2.17). It checks the config, keeps the token
// in /etc/mcp-gateway/.token (where the SDK's getMcpToken() reads it), starts serve.mjs as a
// daemon and waits until that serves every configured server on port 50005, or failed: then
// it exits 1 with the reason on stderr, which the SDK puts in "Failed to start MCP gateway".
import { spawn } from 'node:child_process';
import { mkdirSync, openSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { planServers } from './config.mjs';

const ETC = '/etc/mcp-gateway';
const LOG = '/var/log/mcp-gateway.log';
const here = dirname(fileURLToPath(import.meta.url));

function fail(message) {
  process.stderr.write(`mcp-gateway: ${message}\n`);
  process.exit(1);
}

const i = process.argv.indexOf('--config');
if (i < 0 || process.argv[i + 1] === undefined) fail("usage: mcp-gateway --config '<json>'");
let config;
try {
  config = JSON.parse(process.argv[i + 1]);
} catch (err) {
  fail(`--config is not JSON: ${err.message}`);
}
const token = process.env.GATEWAY_ACCESS_TOKEN ?? '';
if (token.length < 16) fail('GATEWAY_ACCESS_TOKEN must be set (at least 16 characters)');
try {
  planServers(config); // the same check serve.mjs makes, answered before anything starts
} catch (err) {
  fail(err.message);
}

mkdirSync(ETC, { recursive: true, mode: 0o700 });
writeFileSync(join(ETC, '.token'), token, { mode: 0o600 });
writeFileSync(join(ETC, 'config.json'), JSON.stringify(config), { mode: 0o600 }); // it holds API keys
const log = openSync(LOG, 'a', 0o600);
const daemon = spawn(process.execPath, [join(here, 'serve.mjs')], {
  detached: true,
  stdio: ['ignore', log, log, 'pipe'],
});
let said = '';
daemon.stdio[3].on('data', (d) => (said += d));
daemon.stdio[3].on('close', () => {
  if (said.startsWith('ready')) {
    process.stdout.write(`mcp-gateway: serving ${said.slice(6).trim()} on :50005/mcp (log: ${LOG})\n`);
    daemon.unref();
    process.exit(0);
  }
  fail(said.trim() || `the gateway exited before it was ready (see ${LOG})`);
});
