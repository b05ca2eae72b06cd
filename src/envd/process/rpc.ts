/** What every process RPC shares: the sandbox's registry, selectors, and the error hook. */
import type { HandlerContext } from '@connectrpc/connect';
import { CoveError } from '../../core/errors.ts';
import type { ProcessSelector as WireSelector } from '../../gen/process/process_pb.js';
import type { ProcessRegistry, ProcessSelector } from '../../manager/processes.ts';
import { sandboxOfCall } from '../context.ts';
import { toConnectError } from '../errors.ts';
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

/** Every unary handler goes through the one error hook, so nothing internal leaks. */
export function unary<I, O>(
  deps: EnvdDeps,
  fn: (req: I, ctx: HandlerContext) => Promise<O>,
): (req: I, ctx: HandlerContext) => Promise<O> {
  return async (req, ctx) => {
    try {
      return await fn(req, ctx);
    } catch (err) {
      throw toConnectError(err, deps.log);
    }
  };
}

/** The same for server streams: an error before or after the first event ends the stream. */
export function serverStream<I, O>(
  deps: EnvdDeps,
  fn: (req: I, ctx: HandlerContext) => AsyncIterable<O>,
): (req: I, ctx: HandlerContext) => AsyncIterable<O> {
  return async function* (req, ctx) {
    try {
      yield* fn(req, ctx);
    } catch (err) {
      throw toConnectError(err, deps.log);
    }
  };
}
