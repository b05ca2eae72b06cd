import type { ConnectRequest } from '../../gen/process/process_pb.js';
import type { EnvdDeps } from '../index.ts';
import { follow, startEvent } from './events.ts';
import { registryOf, selectorOf, serverStream } from './rpc.ts';

/**
 * Connect: follows a process by pid or tag from now on (no replay): start{pid} at once, then
 * its output and its end. A process that exited within the retention window answers with
 * start and its stored end. `Connect-Timeout-Ms` ends only this stream.
 */
export function connect(deps: EnvdDeps) {
  return serverStream(deps, async function* (req: ConnectRequest, ctx) {
    const process = await registryOf(deps, ctx).find(selectorOf(req.process));
    const events = process.subscribe();
    try {
      yield { event: startEvent(process.pid) };
      for await (const event of follow(events, ctx)) yield { event };
    } finally {
      events.close();
    }
  });
}
