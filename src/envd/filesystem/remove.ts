import { create } from '@bufbuild/protobuf';
import { isCoveError } from '../../core/errors.ts';
import {
  type RemoveRequest,
  type RemoveResponse,
  RemoveResponseSchema,
} from '../../gen/filesystem/filesystem_pb.js';
import { type FsDeps, fsCall, unary } from './rpc.ts';

/** Remove: rm -rf without following symlinks; a path that is already gone is success, as in
 * envd (os.RemoveAll) and the SDK's "remove non-existing file" test. */
export const remove = (deps: FsDeps) =>
  unary(deps, async (req: RemoveRequest, ctx): Promise<RemoveResponse> => {
    const call = await fsCall(deps, ctx);
    await call.agent.remove(call.resolve(req.path), call.as).catch((err: unknown) => {
      if (!isCoveError(err, 'not_found')) throw err;
    });
    return create(RemoveResponseSchema, {});
  });
