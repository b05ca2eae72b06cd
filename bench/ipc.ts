import type { ChildProcess } from 'node:child_process';

/** What a bench child answers to each request. */
export type Reply = { ok: true; value: unknown } | { ok: false; error: string };

/**
 * The child side: answers every request from the parent with `handle`, and leaves when the
 * parent goes away (even killed: that closes the channel).
 */
export function serveParent<R>(handle: (req: R) => Promise<unknown>): void {
  process.on('message', (req: R) => {
    handle(req).then(
      (value) => process.send?.({ ok: true, value } satisfies Reply),
      (err: unknown) =>
        process.send?.({ ok: false, error: err instanceof Error ? err.stack || err.message : String(err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
}

/**
 * The parent side of a forked bench child: one request at a time (the runner awaits each
 * step); `close` sends `closeRequest` when the child can still take it, then ends it.
 */
export function childClient<R>(child: ChildProcess, name: string, closeRequest: R) {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let pending: { resolve(v: never): void; reject(e: Error): void } | undefined;
  child.on('message', (reply: Reply) => {
    const p = pending;
    pending = undefined;
    if (reply.ok) p?.resolve(reply.value as never);
    else p?.reject(new Error(`${name}: ${reply.error}`));
  });
  child.once('exit', (code, signal) => pending?.reject(new Error(`${name} exited (${code ?? signal})`)));

  function ask<T>(req: R): Promise<T> {
    if (pending) return Promise.reject(new Error(`${name}: a request is already pending`));
    if (!child.connected) return Promise.reject(new Error(`${name} is gone`));
    return new Promise<T>((resolve, reject) => {
      pending = { resolve, reject };
      child.send(req as object);
    });
  }

  return {
    ask,
    close: async (): Promise<void> => {
      if (child.connected && !pending) await ask(closeRequest).catch(() => undefined);
      if (child.exitCode === null && child.signalCode === null) child.kill();
      await exited;
    },
  };
}
