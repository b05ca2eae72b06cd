import { create } from '@bufbuild/protobuf';
import {
  type MoveRequest,
  type MoveResponse,
  MoveResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { type FsDeps, fsCall, unary } from './rpc.ts';

/** Move: rename(2), creating the destination's parents; a missing source is not_found. */
export const move = (deps: FsDeps) =>
  unary(deps, async (req: MoveRequest, ctx): Promise<MoveResponse> => {
    const call = await fsCall(deps, ctx);
    const info = await call.agent.rename(call.resolve(req.source), call.resolve(req.destination), call.as);
    return create(MoveResponseSchema, { entry: await call.entry(info) });
  });
