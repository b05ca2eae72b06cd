import { CoveError } from '../../core/errors.ts';
import type { ProcessInput, SendInputRequest } from '../../gen/process/process_pb.js';
import type { TrackedProcess } from '../../manager/processes.ts';
import type { EnvdDeps } from '../index.ts';
import { registryOf, selectorOf, unary } from './rpc.ts';

/** stdin bytes go to the pipe, pty bytes to the terminal; the wrong kind for the process is
 * refused (envd: "tty assigned to process ..."). Shared with StreamInput. */
export async function deliver(process: TrackedProcess, input: ProcessInput | undefined): Promise<void> {
  switch (input?.input.case) {
    case 'stdin':
      return process.writeStdin(Buffer.from(input.input.value));
    case 'pty':
      return process.writePty(Buffer.from(input.input.value));
    case undefined:
      throw new CoveError('invalid_argument', 'input must be stdin or pty bytes');
  }
}

/** SendInput: one write, answered once the bytes are in the pipe or pty. */
export function sendInput(deps: EnvdDeps) {
  return unary(deps, async (req: SendInputRequest, ctx) => {
    await deliver(await registryOf(deps, ctx).live(selectorOf(req.process)), req.input);
    return {};
  });
}
