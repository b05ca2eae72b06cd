import type { HandlerContext } from '@connectrpc/connect';
import { CoveError } from '../../core/errors.ts';
import type { StreamInputRequest } from '../../gen/process/process_pb.js';
import type { TrackedProcess } from '../../manager/processes.ts';
import { toConnectError } from '../errors.ts';
import type { EnvdDeps } from '../index.ts';
import { registryOf, selectorOf } from './rpc.ts';
import { deliver } from './send-input.ts';

/**
 * StreamInput (client streaming; no JS SDK calls it): a `start` naming the process, then
 * `data` events written in order, each after the previous one is in the pipe (so a fast
 * client is paced by the process reading its stdin), and keepalives that are ignored.
 * connect-node reads the request body as it arrives, so this works over HTTP/1.1 too.
 */
export function streamInput(deps: EnvdDeps) {
  return async (requests: AsyncIterable<StreamInputRequest>, ctx: HandlerContext) => {
    try {
      let process: TrackedProcess | undefined;
      for await (const req of requests) {
        switch (req.event.case) {
          case 'start':
            process = await registryOf(deps, ctx).live(selectorOf(req.event.value.process));
            break;
          case 'data':
            if (!process)
              throw new CoveError('invalid_argument', 'StreamInput must begin with a start event');
            await deliver(process, req.event.value.input);
            break;
          case 'keepalive':
            break;
          case undefined:
            throw new CoveError('invalid_argument', 'unknown StreamInput event');
        }
      }
      return {};
    } catch (err) {
      throw toConnectError(err, deps.log);
    }
  };
}
