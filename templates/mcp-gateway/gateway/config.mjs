// The gateway's config (E2B's `mcp` option, spec 2.17) as a list of servers to run: catalog
// names from catalog.json, and `github/<owner>/<repo>` with runCmd, installCmd and envs, whose
// repository Cove has already copied to /opt/mcp-gateway/github/<owner>/<repo> at create.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const catalog = JSON.parse(readFileSync(join(here, 'catalog.json'), 'utf8'));
export const REPOS = '/opt/mcp-gateway/github';
const GITHUB = /^github\/([A-Za-z0-9][A-Za-z0-9-]{0,38})\/([A-Za-z0-9._-]{1,100})$/;
const BIN = join(here, 'node_modules', '.bin');

/** A server's tool names are `<prefix>__<tool>`; the prefix is its key made of [A-Za-z0-9_-]. */
const prefixOf = (key) => key.replace(/[^A-Za-z0-9_-]+/g, '-');

export function planServers(config) {
  if (!config || typeof config !== 'object' || Array.isArray(config))
    throw new Error('the config must be an object');
  const unknown = Object.keys(config).filter((k) => !k.startsWith('github/') && !(k in catalog));
  if (unknown.length)
    throw new Error(
      `unknown MCP server ${unknown.map((k) => JSON.stringify(k)).join(', ')}: this gateway runs ` +
        `${Object.keys(catalog).join(', ')} and github/<owner>/<repo>`,
    );
  return Object.entries(config).map(([key, value]) => {
    const opts = value && typeof value === 'object' ? value : {};
    if (key.startsWith('github/')) {
      const m = GITHUB.exec(key);
      if (!m || m[2] === '.' || m[2] === '..')
        throw new Error(`${JSON.stringify(key)} is not github/<owner>/<repo>`);
      if (typeof opts.runCmd !== 'string' || !opts.runCmd) throw new Error(`${key}: runCmd is required`);
      const dir = join(REPOS, m[1], m[2]);
      if (!existsSync(dir)) throw new Error(`${key}: the repository was not fetched into ${dir}`);
      return {
        key,
        prefix: prefixOf(`${m[1]}-${m[2]}`),
        command: '/bin/bash',
        args: ['-lc', opts.runCmd],
        cwd: dir,
        env: strings(key, opts.envs),
        installCmd: typeof opts.installCmd === 'string' && opts.installCmd ? opts.installCmd : undefined,
      };
    }
    const entry = catalog[key];
    const args = [];
    if (entry.argsFrom) {
      const list = opts[entry.argsFrom];
      if (!Array.isArray(list) || !list.length || list.some((p) => typeof p !== 'string'))
        throw new Error(`${key}: ${entry.argsFrom} must be a non-empty list of strings`);
      args.push(...list);
    }
    return {
      key,
      prefix: prefixOf(key),
      command: join(BIN, entry.command),
      args,
      cwd: '/root',
      env: { ...entry.env },
    };
  });
}

function strings(key, envs) {
  if (envs === undefined) return {};
  if (!envs || typeof envs !== 'object' || Object.values(envs).some((v) => typeof v !== 'string'))
    throw new Error(`${key}: envs must map names to strings`);
  return { ...envs };
}
