import { CoveError, isCoveError } from '../../core/errors.ts';

/**
 * A VM that does not become ready (its agent answering, its identity set) within its time is
 * killed and launched once more from what it was launched with; a second failure is reported
 * as one typed error naming both: `deadline_exceeded` when the second attempt ran out of time,
 * `unavailable` otherwise (QEMU exited, the guest panicked). A VM that cannot start twice in a
 * row is not started a third time: the caller undoes the sandbox.
 */
export async function readyOrRetry(opts: {
  id: string;
  /** One attempt: resolves once the VM is ready, rejects on its timeout or QEMU's end. */
  ready: () => Promise<void>;
  /** Kills the VM and starts it again as it was launched (its vCPUs stopped or its state loaded). */
  relaunch: () => Promise<void>;
  log?: (msg: string, fields: Record<string, unknown>) => void;
}): Promise<void> {
  let first: unknown;
  try {
    return await opts.ready();
  } catch (err) {
    first = err;
  }
  opts.log?.('microvm: VM not ready; killed, retrying once', { sandbox: opts.id, err: String(first) });
  try {
    await opts.relaunch();
    await opts.ready();
  } catch (second) {
    const code = isCoveError(second, 'deadline_exceeded') ? 'deadline_exceeded' : 'unavailable';
    throw new CoveError(
      code,
      `VM ${opts.id} did not become ready, twice (killed and retried once): ${reason(first)}; then ${reason(second)}`,
      { cause: second },
    );
  }
}

const reason = (err: unknown) => (err instanceof Error ? err.message : String(err)).slice(0, 300);
