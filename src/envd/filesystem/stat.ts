import { create } from '@bufbuild/protobuf';
import {
  type StatRequest,
  type StatResponse,
  StatResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { type FsDeps, fsCall, unary } from './rpc.ts';

/** Stat: lstat of the path (`files.getInfo`, `files.exists`); missing is not_found. */
export const stat = (deps: FsDeps) =>
  unary(deps, async (req: StatRequest, ctx): Promise<StatResponse> => {
    const call = await fsCall(deps, ctx);
    const info = await call.agent.stat(call.resolve(req.path), call.as);
    return create(StatResponseSchema, { entry: await call.entry(info) });
  });
