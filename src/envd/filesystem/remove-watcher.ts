import { create } from '@bufbuild/protobuf';
import {
  type RemoveWatcherRequest,
  type RemoveWatcherResponse,
  RemoveWatcherResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { sandboxOfCall } from '../context.ts';
import { type FsDeps, unary } from './rpc.ts';

/** RemoveWatcher: stops the watcher; an unknown id is not_found. */
export const removeWatcher = (deps: FsDeps) =>
  unary(deps, async (req: RemoveWatcherRequest, ctx): Promise<RemoveWatcherResponse> => {
    await deps.watchers.remove(sandboxOfCall(ctx), req.watcherId);
    return create(RemoveWatcherResponseSchema, {});
  });
