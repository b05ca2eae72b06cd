/** What GET and POST /files share: signing, the user, paths, and the one error reply. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AgentClient, FsUser } from '../../agent-channel/client.ts';
import { CoveError, httpStatus } from '../../core/errors.ts';
import type { SandboxUser } from '../../manager/users.ts';
import { resolvePath } from '../filesystem/paths.ts';
import { sendError } from '../http.ts';
import type { EnvdDeps } from '../index.ts';
import { type FileOperation, signingError } from './signing.ts';

export interface FilesCall {
  sandbox: string;
  agent: AgentClient;
  user: SandboxUser;
  /** envd's reach (root's), the user's ownership: as the filesystem service. */
  as: FsUser;
  query: URLSearchParams;
  resolve(path: string): string;
}

/** A status envd chooses itself, outside the CoveError table (401 for users, 406, 507). */
export class HttpError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/**
 * Authorizes a /files request (signing.ts) and resolves its user from `username` (the SDK
 * never sends Basic auth here), or the template's default. An unknown user is 401, as envd.
 */
export async function filesCall(
  deps: EnvdDeps,
  req: IncomingMessage,
  sandbox: string,
  op: FileOperation,
): Promise<FilesCall> {
  const query = new URL(req.url ?? '/', 'http://envd').searchParams;
  const header = req.headers['x-access-token'];
  const denied = signingError({
    token: deps.manager.get(sandbox).envdAccessToken,
    headerToken: typeof header === 'string' ? header : undefined,
    query,
    op,
  });
  if (denied) throw new HttpError(401, denied);
  const name = query.get('username') || deps.manager.defaultUser(sandbox);
  const user = await deps.manager.user(sandbox, name).catch((err: unknown) => {
    if (err instanceof CoveError && err.code === 'invalid_argument')
      throw new HttpError(401, `error looking up user '${name}': unknown user ${name}`);
    throw err;
  });
  return {
    sandbox,
    agent: deps.manager.agent(sandbox),
    user,
    as: { uid: user.uid, gid: user.gid, elevated: true },
    query,
    resolve: (path) => resolvePath(path, user.home),
  };
}

/** The errno an agent refusal carried ("write /x: ENOSPC (write)"), for the statuses only
 * envd distinguishes (507 for a full disk). */
export function errnoOf(err: unknown): string | undefined {
  return err instanceof CoveError ? /: (E[A-Z0-9]+)\b/.exec(err.message)?.[1] : undefined;
}

/** The one error reply of /files: envd's `{code, message}`; anything unexpected is a 500,
 * logged once and answered without detail. */
export function replyError(deps: EnvdDeps, res: ServerResponse, err: unknown): void {
  if (err instanceof HttpError) return sendError(res, err.status, err.message);
  if (err instanceof CoveError) {
    const errno = errnoOf(err);
    if (errno === 'ENOSPC' || errno === 'EDQUOT')
      return sendError(res, 507, 'not enough disk space available');
    return sendError(res, httpStatus[err.code], err.message);
  }
  // A client that went away mid-transfer is not a fault of ours: nobody reads the reply.
  if (res.destroyed || (err as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET')
    return void deps.log.info({ err: String(err) }, 'envd /files: the client went away');
  deps.log.error({ err }, 'envd /files failed');
  sendError(res, 500, 'internal error');
}
