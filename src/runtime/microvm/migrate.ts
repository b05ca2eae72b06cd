import { existsSync } from 'node:fs';
import { CoveError } from '../../core/errors.ts';
import type { Qmp } from './qemu.ts';

/**
 * A VM's state to and from a file: QEMU's migration through `cat` (QEMU 7.2 has no `file:`
 * URI, and `-sandbox on` still lets it spawn). Guest RAM in a shared file is left out with
 * `x-ignore-shared` (a template VM: that file is its memory); everything else goes into the
 * stream. The disk is not part of it: the caller keeps the qcow2 layer the VM wrote.
 */
export interface MigrateOptions {
  ignoreShared: boolean;
  timeoutMs: number;
}

const quote = (path: string) => `'${path.replaceAll("'", `'\\''`)}'`;

async function setCapabilities(q: Qmp, ignoreShared: boolean): Promise<void> {
  await q.execute('migrate-set-capabilities', {
    capabilities: [
      { capability: 'events', state: true },
      { capability: 'x-ignore-shared', state: ignoreShared },
    ],
  });
}

async function finished(q: Qmp, run: () => Promise<unknown>, timeoutMs: number, what: string) {
  const done = q.event(
    (m) => m.event === 'MIGRATION' && (m.data?.status === 'completed' || m.data?.status === 'failed'),
    timeoutMs,
    what,
  );
  await run();
  const ev = await done;
  if (ev.data?.status === 'failed') {
    const info = (await q.execute('query-migrate').catch(() => ({}))) as { 'error-desc'?: string };
    throw new CoveError('internal', `${what} failed: ${info['error-desc'] ?? 'QEMU gave no reason'}`);
  }
}

/**
 * Stops the VM and writes its state into `file`, which exists only once complete (QEMU reports
 * completion when its end of the pipe is written, `cat` may still be writing: it renames).
 * The VM stays stopped; the caller ends it.
 */
export async function saveState(q: Qmp, file: string, opts: MigrateOptions): Promise<void> {
  await q.execute('stop');
  await setCapabilities(q, opts.ignoreShared);
  const tmp = `${file}.part`;
  await finished(
    q,
    () => q.execute('migrate', { uri: `exec:cat > ${quote(tmp)} && mv ${quote(tmp)} ${quote(file)}` }),
    opts.timeoutMs,
    'saving the VM',
  );
  const deadline = Date.now() + opts.timeoutMs;
  while (!existsSync(file)) {
    if (Date.now() > deadline)
      throw new CoveError('deadline_exceeded', `the VM's state ${file} was not written`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Loads a state saved by saveState into a VM started with `-incoming defer`; it stays stopped (`-S`). */
export async function loadState(q: Qmp, file: string, opts: MigrateOptions): Promise<void> {
  await setCapabilities(q, opts.ignoreShared);
  await finished(
    q,
    () => q.execute('migrate-incoming', { uri: `exec:cat ${quote(file)}` }),
    opts.timeoutMs,
    'restoring the VM',
  );
}
