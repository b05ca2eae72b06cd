import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, rename, rm } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { CoveError } from '../../core/errors.ts';
import type { Qmp } from './qemu.ts';

/**
 * A VM's state to and from a file: QEMU's migration over a unix socket whose other end is
 * Cove, which writes or reads the file (QEMU 7.2 has no `file:` URI). QEMU itself never opens
 * the file: it runs as an unprivileged user that cannot (qemu.ts, `-runas`), and may spawn
 * nothing (`-sandbox spawn=deny`). The socket is in the VM's `io` directory, the one place
 * that user may write. Guest RAM in a shared file is left out with `x-ignore-shared` (a
 * template VM: that file is its memory); everything else goes into the stream. The disk is
 * not part of it: the caller keeps the qcow2 layer the VM wrote.
 */
export interface MigrateOptions {
  ignoreShared: boolean;
  timeoutMs: number;
  /** The VM's `io` directory (vm.ts): where the migration socket is made. */
  socketDir: string;
}

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
  done.catch(() => undefined); // awaited below, unless run() fails first
  await run();
  const ev = await done;
  if (ev.data?.status === 'failed') {
    const info = (await q.execute('query-migrate').catch(() => ({}))) as { 'error-desc'?: string };
    throw new CoveError('internal', `${what} failed: ${info['error-desc'] ?? 'QEMU gave no reason'}`);
  }
}

/**
 * Stops the VM and writes its state into `file`, which exists only once complete (written as
 * `<file>.part` and renamed when QEMU has closed its end). The VM stays stopped; the caller ends it.
 */
export async function saveState(q: Qmp, file: string, opts: MigrateOptions): Promise<void> {
  await q.execute('stop');
  await setCapabilities(q, opts.ignoreShared);
  const sock = join(opts.socketDir, 'save.sock');
  const tmp = `${file}.part`;
  await rm(sock, { force: true });
  const server = createServer();
  const received = new Promise<void>((resolve, reject) => {
    server.once('connection', (conn: Socket) => {
      server.close();
      pipeline(conn, createWriteStream(tmp, { mode: 0o600 })).then(resolve, reject);
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(sock, () => resolve());
    });
    await chmod(sock, 0o666); // QEMU's user connects; the directory is its own (0700)
    await finished(q, () => q.execute('migrate', { uri: `unix:${sock}` }), opts.timeoutMs, 'saving the VM');
    await deadline(received, opts.timeoutMs, `the VM's state ${file} was not written`);
    await rename(tmp, file);
  } finally {
    server.close();
    await rm(sock, { force: true });
    await rm(tmp, { force: true });
  }
}

/** Loads a state saved by saveState into a VM started with `-incoming defer`; it stays stopped (`-S`). */
export async function loadState(q: Qmp, file: string, opts: MigrateOptions): Promise<void> {
  await setCapabilities(q, opts.ignoreShared);
  const sock = join(opts.socketDir, 'load.sock');
  await rm(sock, { force: true });
  let sent: Promise<unknown> = Promise.resolve();
  try {
    await finished(
      q,
      async () => {
        await q.execute('migrate-incoming', { uri: `unix:${sock}` }); // QEMU listens when it answers
        const conn = await new Promise<Socket>((resolve, reject) => {
          const c = connect(sock, () => resolve(c));
          c.once('error', reject);
        });
        // Not awaited: QEMU closes its end once it has read the state, which may come before
        // this side's 'finish' (a premature close that is a success); its MIGRATION event says.
        sent = pipeline(createReadStream(file), conn).catch((err: unknown) => err);
      },
      opts.timeoutMs,
      'restoring the VM',
    );
  } catch (err) {
    const streamErr = await sent;
    throw streamErr instanceof Error
      ? new CoveError('internal', `${String(err)} (sending ${file}: ${streamErr.message})`, { cause: err })
      : err;
  } finally {
    await rm(sock, { force: true });
  }
}

function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new CoveError('deadline_exceeded', what)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}
