import { create } from '@bufbuild/protobuf';
import {
  type CreateWatcherRequest,
  type CreateWatcherResponse,
  CreateWatcherResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { type FsDeps, fsCall, unary } from './rpc.ts';

/** CreateWatcher: WatchDir's polling form (watchers.ts); same path rules and errors. */
export const createWatcher = (deps: FsDeps) =>
  unary(deps, async (req: CreateWatcherRequest, ctx): Promise<CreateWatcherResponse> => {
    const call = await fsCall(deps, ctx);
    const watcherId = await deps.watchers.create(call, call.resolve(req.path), {
      recursive: req.recursive,
      includeEntry: req.includeEntry,
    });
    return create(CreateWatcherResponseSchema, { watcherId });
  });
