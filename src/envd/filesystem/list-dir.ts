import { create } from '@bufbuild/protobuf';
import {
  type ListDirRequest,
  type ListDirResponse,
  ListDirResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { type FsDeps, fsCall, unary } from './rpc.ts';

/**
 * ListDir: entries down to `depth` (0 means 1; the agent caps it at 64 and the listing at
 * 10 000 entries) in Go WalkDir's order, lexical depth-first pre-order. A symlink given as the
 * path is followed, none below it; paths are the requested path joined with the relative one.
 * Missing is not_found, not a directory invalid_argument.
 */
export const listDir = (deps: FsDeps) =>
  unary(deps, async (req: ListDirRequest, ctx): Promise<ListDirResponse> => {
    const call = await fsCall(deps, ctx);
    const infos = await call.agent.list(call.resolve(req.path), Math.max(1, req.depth), call.as);
    return create(ListDirResponseSchema, { entries: await call.entries(infos) });
  });
