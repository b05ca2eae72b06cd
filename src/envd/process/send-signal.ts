import { Code, ConnectError } from '@connectrpc/connect';
import { Signal, type SendSignalRequest } from '../../gen/process/process_pb.js';
import type { EnvdDeps } from '../index.ts';
import { registryOf, selectorOf, unary } from './rpc.ts';

/**
 * SendSignal: SIGKILL or SIGTERM; envd answers any other signal with unimplemented (a Connect
 * code Cove's error set does not have, hence the ConnectError). envd signals the process
 * only. Cove sends SIGKILL to the process group (every spawn leads its own), so a killed
 * command leaves no orphans the SDK can no longer see, and answers once the exit is known;
 * SIGTERM stays with the process, which may shut its own children down.
 */
export function sendSignal(deps: EnvdDeps) {
  return unary(deps, async (req: SendSignalRequest, ctx) => {
    const process = await registryOf(deps, ctx).live(selectorOf(req.process));
    switch (req.signal) {
      case Signal.SIGKILL:
        await process.signal('SIGKILL');
        return {};
      case Signal.SIGTERM:
        await process.signal('SIGTERM');
        return {};
      case Signal.UNSPECIFIED:
        break;
    }
    throw new ConnectError(`invalid signal: ${Signal[req.signal] ?? req.signal}`, Code.Unimplemented);
  });
}
