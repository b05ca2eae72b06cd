/** What every process RPC shares: the sandbox's registry, selectors, and the error hook. */
import type { HandlerContext } from '@connectrpc/connect';
import { CoveError } from '../../core/errors.ts';
import type { ProcessSelector as WireSelector } from '../../gen/process/process_pb.js';
import type { ProcessRegistry, ProcessSelector } from '../../manager/processes.ts';
import { sandboxOfCall } from '../context.ts';
import type { EnvdDeps } from '../index.ts';

export function registryOf(deps: EnvdDeps, ctx: HandlerContext): ProcessRegistry {
  return deps.manager.processes(sandboxOfCall(ctx));
}

export function selectorOf(s: WireSelector | undefined): ProcessSelector {
  switch (s?.selector.case) {
    case 'pid':
      return { pid: s.selector.value };
    case 'tag':
      return { tag: s.selector.value };
    case undefined:
      throw new CoveError('invalid_argument', 'a process selector (pid or tag) is required');
  }
}

export { serverStream, unary } from '../errors.ts';
