import type { CloseStdinRequest } from '../../gen/process/process_pb.js';
import type { EnvdDeps } from '../index.ts';
import { registryOf, selectorOf, unary } from './rpc.ts';

/** CloseStdin: EOF on the pipe (a second close is a no-op, as envd); a PTY is refused with
 * envd's hint to send Ctrl+D instead. */
export function closeStdin(deps: EnvdDeps) {
  return unary(deps, async (req: CloseStdinRequest, ctx) => {
    await (await registryOf(deps, ctx).live(selectorOf(req.process))).closeStdin();
    return {};
  });
}
