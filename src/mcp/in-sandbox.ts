import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { run } from '../core/exec.ts';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import { shell } from './shell.ts';

/** Where the gateway (templates/mcp-gateway/gateway/config.mjs) finds a github/ server's checkout. */
const REPOS = '/opt/mcp-gateway/github';
/** GitHub's own rules for owner and repository names: nothing else reaches a git URL. */
const GITHUB = /^github\/([A-Za-z0-9][A-Za-z0-9-]{0,38})\/([A-Za-z0-9._-]{1,100})$/;
/** A repository larger than this (packed, as copied) is refused. */
const MAX_REPO_BYTES = 64 * 2 ** 20;
const CLONE_TIMEOUT_MS = 120_000;

export interface InSandboxMcp {
  /** Refuses, before any sandbox exists, a config the gateway could not run (an unknown name). */
  check(mcp: Record<string, unknown>): void;
  /** Copies each github/ server's repository into the new sandbox, for the gateway to run. */
  prepare(id: string, mcp: Record<string, unknown>): Promise<void>;
}

/**
 * E2B's `mcp` option, Cove's half (docs/mcp.md): the SDK itself starts the gateway in the
 * sandbox after the create (spec 2.17); Cove checks the names at create, so that an unknown
 * one fails the create with its name rather than after a sandbox was made (with the SDK's own
 * "Failed to start MCP gateway" wording, which E2B's tests and users match), and clones each
 * `github/<owner>/<repo>` from the operator's git base (COVE_MCP_GIT_BASE) on the host, where
 * that server is reachable (a private mirror; sandboxes do not reach the host's network, and a
 * sandbox without internet still gets its servers), then copies it in as a git bundle.
 */
export async function createInSandboxMcp(opts: {
  manager: Manager;
  log: Logger;
  recipesDir: string;
  gitBase: string;
}): Promise<InSandboxMcp> {
  const catalog = Object.keys(
    JSON.parse(
      await readFile(join(opts.recipesDir, 'mcp-gateway', 'gateway', 'catalog.json'), 'utf8'),
    ) as object,
  );
  const base = opts.gitBase.replace(/\/+$/, '');

  function repos(mcp: Record<string, unknown>): Array<[string, string]> {
    return Object.keys(mcp)
      .filter((k) => k.startsWith('github/'))
      .map((k) => {
        const m = GITHUB.exec(k);
        if (!m || m[2] === '.' || m[2] === '..')
          throw new CoveError(
            'invalid_argument',
            `Failed to start MCP gateway: "${k}" is not github/<owner>/<repo>`,
          );
        return [m[1]!, m[2]!];
      });
  }

  return {
    check(mcp) {
      const unknown = Object.keys(mcp).filter((k) => !k.startsWith('github/') && !catalog.includes(k));
      if (unknown.length)
        throw new CoveError(
          'invalid_argument',
          `Failed to start MCP gateway: unknown MCP server ${unknown.map((k) => `"${k}"`).join(', ')}: Cove's mcp-gateway runs ` +
            `${catalog.join(', ')} and github/<owner>/<repo> (docs/mcp.md)`,
        );
      repos(mcp);
    },

    async prepare(id, mcp) {
      for (const [owner, repo] of repos(mcp)) {
        const url = `${base}/${owner}/${repo}`;
        const dir = await mkdtemp(join(tmpdir(), 'cove-mcp-'));
        try {
          const env = {
            PATH: process.env.PATH,
            HOME: dir,
            GIT_TERMINAL_PROMPT: '0',
            GIT_CONFIG_NOSYSTEM: '1',
          };
          await run('git', ['clone', '--quiet', '--depth=1', '--no-tags', '--', url, join(dir, 'r')], {
            timeoutMs: CLONE_TIMEOUT_MS,
            env,
          }).catch((err: unknown) => {
            throw new CoveError(
              'invalid_argument',
              `Failed to start MCP gateway: github/${owner}/${repo}: cloning ${url} failed: ${String((err as Error).message)}`,
            );
          });
          // A bundle: one file, the history git clones back with its own checks (no hooks travel).
          await run('git', ['-C', join(dir, 'r'), 'bundle', 'create', '--quiet', join(dir, 'b'), 'HEAD'], {
            env,
          });
          const bundle = await readFile(join(dir, 'b'));
          if (bundle.length > MAX_REPO_BYTES)
            throw new CoveError(
              'invalid_argument',
              `Failed to start MCP gateway: github/${owner}/${repo} is larger than ${MAX_REPO_BYTES >> 20} MiB`,
            );
          const target = `${REPOS}/${owner}/${repo}`;
          const tmp = `/tmp/.cove-mcp-${owner}-${repo}.bundle`;
          await opts.manager.agent(id).writeFile(tmp, bundle, { uid: 0, gid: 0, elevated: true });
          const r = await shell(
            opts.manager,
            id,
            `set -e; mkdir -p ${REPOS}/${owner}; rm -rf ${target}; git clone --quiet ${tmp} ${target}; rm -f ${tmp}`,
            { user: 'root', timeoutMs: CLONE_TIMEOUT_MS },
          );
          if (r.exitCode !== 0)
            throw new CoveError(
              'invalid_argument',
              `Failed to start MCP gateway: github/${owner}/${repo}: copying it into the sandbox failed: ${r.stderr.trim()}`,
            );
          opts.log.info(
            { sandbox: id, repo: `${owner}/${repo}`, bytes: bundle.length },
            'MCP server repository copied in',
          );
        } finally {
          await rm(dir, { recursive: true, force: true });
        }
      }
    },
  };
}
