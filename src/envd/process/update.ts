import type { UpdateRequest } from '../../gen/process/process_pb.js';
import type { EnvdDeps } from '../index.ts';
import { registryOf, selectorOf, unary } from './rpc.ts';

/** Update: resizes a PTY (TIOCSWINSZ; the shell gets SIGWINCH). Without `pty.size` there is
 * nothing to change, as in envd. */
export function update(deps: EnvdDeps) {
  return unary(deps, async (req: UpdateRequest, ctx) => {
    const process = await registryOf(deps, ctx).live(selectorOf(req.process));
    const size = req.pty?.size;
    if (size) await process.resize(size.cols, size.rows);
    return {};
  });
}
