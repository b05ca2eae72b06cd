import type { MessageInitShape } from '@bufbuild/protobuf';
import type { ListRequest, ListResponseSchema } from '../../gen/process/process_pb.js';
import type { EnvdDeps } from '../index.ts';
import { registryOf, unary } from './rpc.ts';

/** List: the live processes started through envd (commands and PTYs), with what Start was
 * given. Processes adopted after a restart carry what the agent keeps (no envs). */
export function list(deps: EnvdDeps) {
  return unary(deps, async (_req: ListRequest, ctx): Promise<MessageInitShape<typeof ListResponseSchema>> => {
    const processes = await registryOf(deps, ctx).list();
    return {
      processes: processes.map((p) => ({
        pid: p.pid,
        config: p.config,
        ...(p.tag !== undefined && { tag: p.tag }),
      })),
    };
  });
}
