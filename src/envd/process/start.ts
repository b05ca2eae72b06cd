import { posix } from 'node:path';
import type { MessageInitShape } from '@bufbuild/protobuf';
import { CoveError } from '../../core/errors.ts';
import type { StartRequest, StartResponseSchema } from '../../gen/process/process_pb.js';
import { resolveCaller, sandboxOfCall, usernameFrom } from '../context.ts';
import type { EnvdDeps } from '../index.ts';
import { follow, startEvent } from './events.ts';
import { registryOf, serverStream } from './rpc.ts';

/** envd's path rule (permissions/path.go) for a cwd: empty is the default (the user's home
 * here), `~` and `~/x` are in the home, a relative path is joined to the home. */
export function resolveCwd(cwd: string | undefined, home: string): string | undefined {
  if (cwd === undefined || cwd === '') return undefined;
  if (cwd === '~') return home;
  if (cwd.startsWith('~/')) return posix.join(home, cwd.slice(2));
  return posix.resolve(home, cwd);
}

/**
 * A failed spawn is the request's fault, as envd answers (invalid_argument), except when the
 * sandbox is out of processes or unreachable. The agent names the failed step: a cwd that
 * does not exist fails at chdir with ENOENT.
 */
function spawnError(err: unknown, cmd: string, cwd: string): Error {
  if (!(err instanceof Error)) return new Error(String(err));
  if (!(err instanceof CoveError) || !err.message.startsWith(`spawn ${cmd}: `)) return err;
  if (err.code === 'resource_exhausted' || err.code === 'unavailable') return err;
  if (err.message.endsWith('ENOENT (chdir)'))
    return new CoveError('invalid_argument', `cwd '${cwd}' does not exist`, { cause: err });
  return new CoveError('invalid_argument', `error starting process '${cmd}': ${err.message}`, { cause: err });
}

/**
 * Start: runs a process as the caller (Basic auth, else the template's user) and streams
 * start{pid}, its output, keepalives and one end. `Connect-Timeout-Ms` is the process's
 * lifetime; a client that goes away leaves it running (Connect follows it again).
 */
export function start(deps: EnvdDeps) {
  return serverStream(deps, async function* (req: StartRequest, ctx) {
    const id = sandboxOfCall(ctx);
    const cfg = req.process;
    if (!cfg || cfg.cmd === '') throw new CoveError('invalid_argument', 'process.cmd is required');
    const who = await resolveCaller(deps.manager, id, usernameFrom(ctx.requestHeader.get('authorization')));
    const cwd = resolveCwd(cfg.cwd, who.home);
    // envd starts a pty of the requested size; a request without one gets a usual terminal.
    const pty = req.pty && { cols: req.pty.size?.cols || 80, rows: req.pty.size?.rows || 24 };
    // envd: stdin is a pipe unless explicitly disabled (older SDKs never send the field).
    const stdin = !pty && req.stdin !== false;
    const { process, events } = await registryOf(deps, ctx).start(
      {
        config: {
          cmd: cfg.cmd,
          args: cfg.args,
          envs: cfg.envs,
          ...(cfg.cwd !== undefined && { cwd: cfg.cwd }),
        },
        ...(req.tag !== undefined && { tag: req.tag }),
        pty: pty !== undefined,
        stdin,
        timeoutMs: ctx.timeoutMs(),
      },
      (handlers) =>
        deps.manager
          .exec(
            id,
            {
              argv: [cfg.cmd, ...cfg.args],
              user: who.name,
              env: cfg.envs,
              ...(cwd !== undefined && { cwd }),
              ...(pty && { pty }),
              stdin,
              ...(req.tag !== undefined && { tag: req.tag }),
            },
            handlers,
          )
          .catch((err: unknown) => {
            throw spawnError(err, cfg.cmd, cwd ?? who.home);
          }),
    );
    try {
      yield { event: startEvent(process.pid) } satisfies MessageInitShape<typeof StartResponseSchema>;
      for await (const event of follow(events, ctx)) yield { event };
    } finally {
      events.close();
    }
  });
}
