import { spawn } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import type { Recipe } from './recipe.ts';

/** The generic steps every template gets after mmdebstrap; its content is part of every hash. */
export const FINALIZE_SCRIPT = join(import.meta.dirname, 'finalize-rootfs.sh');

export interface BuildRequest {
  recipe: Recipe;
  /** The recipe's folder (hooks/ is taken from there). */
  recipeDir: string;
  /** Empty or absent directory that receives the rootfs. */
  rootfs: string;
  /** Full output of every step goes here. */
  logFile: string;
  /** Descriptor handed to every child so the build lock lives as long as they do (see lock.ts). */
  lockFd: number;
  log: (line: string) => void;
}

export type BuildFn = (req: BuildRequest) => Promise<void>;

/**
 * mmdebstrap arguments for a recipe. Unshare mode, even as root: the build runs in its own
 * mount namespace, so a killed build leaves no /proc or /dev mounts inside the staging dir,
 * and files keep the ownership the packages give them (host root). Recommends are not
 * installed (mmdebstrap's default for variants and --include alike).
 */
export function mmdebstrapArgs(recipe: Recipe, rootfs: string, hooksDir?: string): string[] {
  const args = ['--mode=unshare', `--variant=${recipe.variant}`];
  if (recipe.packages.length > 0) args.push(`--include=${recipe.packages.join(',')}`);
  for (const opt of recipe.dpkgOptions) args.push(`--dpkgopt=${opt}`);
  if (hooksDir !== undefined) args.push(`--hook-directory=${hooksDir}`);
  args.push(recipe.suite, rootfs, ...recipe.sources);
  return args;
}

export function finalizeArgs(recipe: Recipe, rootfs: string): string[] {
  const u = recipe.user;
  return [FINALIZE_SCRIPT, rootfs, u.name, String(u.uid), String(u.gid), u.home, u.shell, u.sudo ? '1' : '0'];
}

/** The real builder: mmdebstrap, then finalize-rootfs.sh, both as host root. */
export const buildWithMmdebstrap: BuildFn = async (req) => {
  const hooksDir = join(req.recipeDir, 'hooks');
  const logStream = createWriteStream(req.logFile, { flags: 'a' });
  try {
    await run(
      'mmdebstrap',
      mmdebstrapArgs(req.recipe, req.rootfs, existsSync(hooksDir) ? hooksDir : undefined),
      req,
      logStream,
    );
    await run('bash', finalizeArgs(req.recipe, req.rootfs), req, logStream);
  } finally {
    await new Promise<void>((resolve) => logStream.end(resolve));
  }
};

const MAX_TAIL = 40;

function run(
  cmd: string,
  args: string[],
  req: BuildRequest,
  logStream: NodeJS.WritableStream,
): Promise<void> {
  logStream.write(`$ ${cmd} ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['ignore', 'pipe', 'pipe', req.lockFd],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C.UTF-8' },
    });
    const tail: string[] = [];
    let partial = '';
    const onData = (chunk: Buffer): void => {
      logStream.write(chunk);
      const lines = (partial + chunk.toString('utf8')).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        tail.push(line);
        if (tail.length > MAX_TAIL) tail.shift();
        req.log(line);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.on('error', (err) => {
      const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
      reject(
        new CoveError(
          missing ? 'unavailable' : 'internal',
          missing ? `${cmd} is not installed: run scripts/setup.sh` : `cannot run ${cmd}`,
          { cause: err },
        ),
      );
    });
    child.on('close', (code, signal) => {
      if (partial !== '') req.log(partial);
      if (code === 0) resolve();
      else {
        reject(
          new CoveError(
            'internal',
            `${cmd} failed (${signal ?? code}); log: ${req.logFile}\n${tail.slice(-15).join('\n')}`,
          ),
        );
      }
    });
  });
}
