import { create } from '@bufbuild/protobuf';
import { CoveError } from '../../core/errors.ts';
import {
  type MakeDirRequest,
  type MakeDirResponse,
  MakeDirResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { type FsDeps, fsCall, unary } from './rpc.ts';

/**
 * MakeDir: mkdir -p, every created directory 0755 and the user's. An existing directory is
 * already_exists (the SDK's `makeDir` then returns false); an existing non-directory anywhere
 * on the way is invalid_argument.
 */
export const makeDir = (deps: FsDeps) =>
  unary(deps, async (req: MakeDirRequest, ctx): Promise<MakeDirResponse> => {
    const call = await fsCall(deps, ctx);
    const path = call.resolve(req.path);
    const created = await call.agent.mkdir(path, call.as).catch((err: unknown) => {
      if (err instanceof CoveError && err.code === 'invalid_argument')
        throw new CoveError('invalid_argument', `path already exists but it is not a directory: ${path}`, {
          cause: err,
        });
      throw err;
    });
    if (!created) throw new CoveError('already_exists', `directory already exists: ${path}`);
    const info = await call.agent.stat(path, call.as);
    return create(MakeDirResponseSchema, { entry: await call.entry(info) });
  });
