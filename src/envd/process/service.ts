import { Process } from '../../gen/process/process_pb.js';
import { fastServerStream } from '../fast-stream.ts';
import type { ServiceRegistration } from '../index.ts';
import { closeStdin } from './close-stdin.ts';
import { connect } from './connect.ts';
import { list } from './list.ts';
import { sendInput } from './send-input.ts';
import { sendSignal } from './send-signal.ts';
import { start } from './start.ts';
import { streamInput } from './stream-input.ts';
import { update } from './update.ts';

/** envd's `process.Process`, one file per RPC; the state lives in the manager's registry. */
export const processService: ServiceRegistration = (router, deps, fast) => {
  const startImpl = start(deps);
  // Every commands.run is a Start: served without connect-node's adapter when it can be.
  fast.set(
    `/${Process.typeName}/${Process.method.start.name}`,
    fastServerStream(Process.method.start, startImpl),
  );
  router.service(Process, {
    start: startImpl,
    connect: connect(deps),
    list: list(deps),
    sendInput: sendInput(deps),
    streamInput: streamInput(deps),
    sendSignal: sendSignal(deps),
    closeStdin: closeStdin(deps),
    update: update(deps),
  });
};
