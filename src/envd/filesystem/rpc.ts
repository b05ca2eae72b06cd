/** What every filesystem RPC shares: the caller (sandbox, agent, user), entries, the error hook. */
import type { HandlerContext } from '@connectrpc/connect';
import type { AgentClient, FileInfo, FsUser } from '../../agent-channel/client.ts';
import type { EntryInfo } from '../../gen/filesystem/filesystem_pb.js';
import type { SandboxUser } from '../../manager/users.ts';
import { resolveCaller, sandboxOfCall, usernameFrom } from '../context.ts';
import type { EnvdDeps } from '../index.ts';
import { toEntryInfo } from './entry.ts';
import type { OwnerCache, OwnerNames } from './owners.ts';
import { resolvePath } from './paths.ts';
import type { Watchers } from './watchers.ts';

export interface FsDeps extends EnvdDeps {
  owners: OwnerCache;
  watchers: Watchers;
}

/** One call's view of its sandbox. */
export interface FsCall {
  sandbox: string;
  agent: AgentClient;
  user: SandboxUser;
  /** How the agent acts for this call: envd's reach (root's), the user's ownership. */
  as: FsUser;
  /** A request path made absolute for this user (paths.ts). */
  resolve(path: string): string;
  entry(info: FileInfo): Promise<EntryInfo>;
  entries(infos: FileInfo[]): Promise<EntryInfo[]>;
}

export async function fsCall(deps: FsDeps, ctx: HandlerContext): Promise<FsCall> {
  const sandbox = sandboxOfCall(ctx);
  const agent = deps.manager.agent(sandbox);
  const user = await resolveCaller(
    deps.manager,
    sandbox,
    usernameFrom(ctx.requestHeader.get('authorization')),
  );
  // Names are looked up only once an entry is built: a call that fails never reads them.
  let names: Promise<OwnerNames> | undefined;
  const namesNow = (): Promise<OwnerNames> => (names ??= deps.owners.names(sandbox, agent));
  return {
    sandbox,
    agent,
    user,
    as: { uid: user.uid, gid: user.gid, elevated: true },
    resolve: (path) => resolvePath(path, user.home),
    entry: async (info) => toEntryInfo(info, await namesNow()),
    entries: async (infos) => {
      const n = await namesNow();
      return infos.map((info) => toEntryInfo(info, n));
    },
  };
}

export { serverStream, unary } from '../errors.ts';
