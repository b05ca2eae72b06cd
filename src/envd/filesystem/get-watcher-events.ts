import { create } from '@bufbuild/protobuf';
import {
  type GetWatcherEventsRequest,
  type GetWatcherEventsResponse,
  GetWatcherEventsResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { sandboxOfCall } from '../context.ts';
import { type FsDeps, unary } from './rpc.ts';

/** GetWatcherEvents: what the watcher saw since the last poll, or the error that ended it. */
export const getWatcherEvents = (deps: FsDeps) =>
  unary(deps, async (req: GetWatcherEventsRequest, ctx): Promise<GetWatcherEventsResponse> => {
    const events = deps.watchers.take(sandboxOfCall(ctx), req.watcherId);
    return Promise.resolve(create(GetWatcherEventsResponseSchema, { events }));
  });
