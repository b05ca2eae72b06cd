import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { posix } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import type { BuildSandbox } from './sandbox.ts';
import { expandEnv, type Step } from './spec.ts';

/** What a layer hands to the steps after it: the environment, user and workdir so far. */
export interface StepContext {
  env: Record<string, string>;
  user: { name: string; uid: number; gid: number; home: string };
  workdir?: string;
}

/** Where COPY archives are staged inside a build sandbox (never captured: layers.ts). */
const STAGE = '/tmp/.cove-build';

/**
 * COPY inside the build sandbox, as root: unpack the uploaded archive, give the entry named
 * by the source its owner and mode, then put it at the destination with Docker's COPY rules
 * (a folder's content is merged into the destination folder, a file lands at the destination,
 * or inside it when the destination ends in `/`; a relative destination is under the workdir).
 * A destination folder the COPY creates belongs to the owner too (BuildKit's `--chown`).
 * Arguments arrive as positional parameters, never spliced into the script.
 */
const COPY_SCRIPT = `set -eu
archive=$1 src=$2 dest=$3 owner=$4 mode=$5 workdir=$6
unpack=${STAGE}/unpack
mkdir -p "$unpack"
tar -xf "$archive" -C "$unpack" --no-same-owner
case $dest in /*) ;; *) dest=$workdir/$dest ;; esac
entry=$unpack/$src
if [ ! -e "$entry" ] && [ ! -L "$entry" ]; then echo "COPY: $src is not among the uploaded files" >&2; exit 1; fi
case $owner in *:*) ;; *) owner=$owner: ;; esac
chown -hR "$owner" "$entry"
if [ -n "$mode" ] && [ ! -L "$entry" ]; then chmod -R "$mode" "$entry"; fi
if [ -d "$entry" ] && [ ! -L "$entry" ]; then
  if [ ! -e "$dest" ]; then mkdir -p "$dest" && chown "$owner" "$dest"; fi
  (cd "$entry" && tar -cf - .) | tar -xf - -C "$dest" --keep-directory-symlink --no-overwrite-dir
else
  case $dest in */) mkdir -p "$dest" ;; *) mkdir -p "$(dirname "$dest")" ;; esac
  mv -f "$entry" "$dest"
fi
rm -rf ${STAGE}
`;

/** WORKDIR as root: create the missing folders, owned by the current user, from the first missing one. */
const WORKDIR_SCRIPT = `set -eu
target=$1 owner=$2
[ -d "$target" ] && exit 0
first=$target
while [ ! -d "$(dirname "$first")" ]; do first=$(dirname "$first"); done
mkdir -p "$target"
chown -R "$owner": "$first"
`;

/** USER as root: create the user when missing (as E2B does), then print its passwd line. */
const USER_SCRIPT = `set -eu
id -u "$1" >/dev/null 2>&1 || useradd --create-home --shell /bin/bash "$1"
echo "cove-user $(getent passwd "$1")"
`;

/** What runs the steps, part of every layer key: a changed script is a cache miss. */
export const STEP_RUNNER = createHash('sha256')
  .update([COPY_SCRIPT, WORKDIR_SCRIPT, USER_SCRIPT].join('\0'))
  .digest('hex')
  .slice(0, 16);

/** The source of a COPY without a trailing slash or glob part (the SDK puts the files under it). */
function copySource(src: string): string {
  const parts: string[] = [];
  for (const part of src.split('/')) {
    if (/[*?[{]/.test(part)) break;
    if (part !== '' && part !== '.') parts.push(part);
  }
  return parts.join('/') || '.';
}

export interface StepRun {
  sandbox: BuildSandbox;
  step: Step;
  ctx: StepContext;
  /** Host path of the uploaded archive of a COPY. */
  archive?: string;
  output: (line: string) => void;
}

/**
 * Runs a step that changes files in its sandbox and returns the context for the next step.
 * A non-zero exit is a CoveError whose message names the command and ends with its output.
 */
export async function runFileStep(r: StepRun): Promise<StepContext> {
  const { sandbox, step, ctx } = r;
  const tail: string[] = [];
  let partial = '';
  const onData = (d: Buffer) => {
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      tail.push(line);
      if (tail.length > 20) tail.shift();
      r.output(line);
    }
  };
  const flush = () => {
    if (partial !== '') {
      tail.push(partial);
      r.output(partial);
      partial = '';
    }
  };
  const cwd = ctx.workdir;
  const run = async (argv: string[], user: string, what: string) => {
    const code = await sandbox.run(argv, { user, env: ctx.env, ...(cwd && { cwd }) }, onData);
    flush();
    if (code !== 0) {
      const out = tail.join('\n').trim();
      throw new CoveError(
        'invalid_argument',
        `${what} failed with exit code ${code}${out ? `:\n${out}` : ''}`,
      );
    }
  };
  const args = step.args;
  switch (step.type) {
    case 'RUN': {
      const cmd = args[0] ?? '';
      const user = args[1] || ctx.user.name;
      await run(['/bin/bash', '-c', cmd], user, `command '${cmd}'`).catch((err: unknown) => {
        // E2B's wording (envd refuses the user), which upstream's runCmd test matches.
        if (err instanceof CoveError && /does not exist in the sandbox/.test(err.message))
          throw new CoveError(
            'invalid_argument',
            `failed to run command '${cmd}': command failed: unauthenticated: invalid username: '${user}'`,
            { cause: err },
          );
        throw err;
      });
      return ctx;
    }
    case 'COPY': {
      if (r.archive === undefined) throw new CoveError('internal', 'COPY without its archive');
      const tarPath = `${STAGE}/${step.filesHash}.tar`;
      await sandbox.writeFile(tarPath, createReadStream(r.archive));
      const workdir = ctx.workdir ?? ctx.user.home;
      const owner = args[2] || ctx.user.name;
      const argv = [
        '/bin/bash',
        '-c',
        COPY_SCRIPT,
        'copy',
        tarPath,
        copySource(args[0] ?? ''),
        args[1] ?? '',
      ];
      await run([...argv, owner, args[3] ?? '', workdir], 'root', `COPY ${args[0]} ${args[1]}`);
      return ctx;
    }
    case 'WORKDIR': {
      const dir = posix.resolve(ctx.workdir ?? ctx.user.home, args[0] ?? '/');
      await run(['/bin/bash', '-c', WORKDIR_SCRIPT, 'workdir', dir, ctx.user.name], 'root', `WORKDIR ${dir}`);
      return { ...ctx, workdir: dir };
    }
    case 'USER': {
      const name = args[0] ?? '';
      let line = '';
      const keep = r.output;
      r.output = (l) => {
        if (l.startsWith('cove-user ')) line = l.slice('cove-user '.length);
        else keep(l);
      };
      await run(['/bin/bash', '-c', USER_SCRIPT, 'user', name], 'root', `USER ${name}`);
      const [pwName, , uid, gid, , home] = line.split(':');
      if (pwName === undefined || home === undefined || !/^\d+$/.test(uid ?? '') || !/^\d+$/.test(gid ?? ''))
        throw new CoveError('invalid_argument', `USER ${name}: the user could not be read back`);
      return { ...ctx, user: { name: pwName, uid: Number(uid), gid: Number(gid), home } };
    }
    case 'ENV':
      return envStep(step, ctx);
  }
}

/** ENV changes no file: values are expanded against the environment so far. */
export function envStep(step: Step, ctx: StepContext): StepContext {
  const env = { ...ctx.env };
  const vars = () => ({ HOME: ctx.user.home, USER: ctx.user.name, ...env });
  for (let i = 0; i + 1 < step.args.length; i += 2) env[step.args[i]!] = expandEnv(step.args[i + 1]!, vars());
  return { ...ctx, env };
}
