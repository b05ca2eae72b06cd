import type { Logger } from './log.ts';

/**
 * `target` with each of its methods logged at debug level when it settles: the component,
 * the method, the sandbox (a first argument that is a string, or has a string `id`), the time taken and the error.
 * The line carries the request id of whatever request caused the call (log.ts), so that one
 * grep follows a request from the API through the manager into the runtime. A Proxy: what the
 * interface gains later is traced too. Costs nothing measurable when debug is off.
 */
export function traced<T extends object>(target: T, log: Logger, component: string): T {
  if (!log.isLevelEnabled('debug')) return target;
  return new Proxy(target, {
    get(t, prop, receiver) {
      const value: unknown = Reflect.get(t, prop, receiver);
      if (typeof value !== 'function') return value;
      const op = String(prop);
      return (...args: unknown[]) => {
        const t0 = performance.now();
        const first = args[0] as { id?: unknown } | string | undefined;
        const sandbox =
          typeof first === 'string' ? first : typeof first?.id === 'string' ? first.id : undefined;
        const done = (err?: unknown) =>
          log.debug(
            { component, op, sandbox, ms: performance.now() - t0, ...(err !== undefined && { err }) },
            'call',
          );
        const result: unknown = (value as (...a: unknown[]) => unknown).apply(t, args);
        if (result instanceof Promise)
          return result.then(
            (v: unknown) => (done(), v),
            (err: unknown) => {
              done(err);
              throw err;
            },
          );
        done();
        return result;
      };
    },
  });
}
