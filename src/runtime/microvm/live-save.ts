import { createHash } from 'node:crypto';
import { copyFile, link, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import { run } from '../../core/exec.ts';
import { saveState } from './migrate.ts';
import type { Vms } from './vm.ts';

/**
 * A running VM's memory and disk saved into `imageDir` while it goes on (a snapshot, or the
 * image its forks restore): QEMU stops the vCPUs and writes the whole state to a file (all
 * RAM: the image must restore without the template's RAM file), which ends by flushing its
 * disk and letting go of it (a migration hands the disk to its destination); the qcow2 layer
 * is copied while nothing writes it, and `cont` takes the disk back and runs the vCPUs again.
 * Memory and disk are of the same instant, so the guest's page cache agrees with its disk in
 * every restore. The VM keeps its processes, connections and agent channel: it only stood
 * still meanwhile (its clock lags by that much, as after a freeze).
 */
export async function saveRunning(
  vms: Vms,
  id: string,
  imageDir: string,
  opts: {
    timeoutMs: number;
    /** Keeps the template's saved VM that backs the copied layer while `holder` exists (template-vm.ts). */
    refer?: (backing: string, owner: string, holder: string) => Promise<void>;
  },
): Promise<void> {
  const state = await vms.readState(id);
  if (state.restored) throw new CoveError('conflict', `sandbox ${id} is not started yet`);
  const disk = join(state.bundleDir, 'disk.qcow2');
  await vms.withQmp(id, async (q) => {
    const { status } = (await q.execute('query-status')) as { status?: string };
    if (status !== 'running') throw new CoveError('conflict', `the VM of ${id} is ${status}, not running`);
    let failure: Error | undefined;
    try {
      await saveState(q, join(imageDir, 'state'), {
        ignoreShared: false,
        timeoutMs: opts.timeoutMs,
        socketDir: vms.ioDir(id),
      });
      await run('cp', ['--sparse=always', disk, join(imageDir, 'disk.qcow2')], { timeoutMs: opts.timeoutMs });
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
    }
    // Whatever happened, the source runs on: a failed save must not leave it stopped.
    await q.execute('cont').catch((err: unknown) => {
      failure ??= new CoveError('internal', `the VM of ${id} did not go on after a save: ${String(err)}`);
    });
    if (failure) throw failure;
  });
  await writeFile(join(imageDir, 'vm.json'), JSON.stringify({ backing: state.backing }));
  if (state.backing) await opts.refer?.(state.backing, ownerOf(imageDir), imageDir);
}

/** The name an image's reference to its saved template VM goes by (template-vm.ts, refs/). */
const ownerOf = (imageDir: string) =>
  `image-${createHash('sha256').update(imageDir).digest('hex').slice(0, 16)}`;

/**
 * A VM paused with its memory (its checkpoint image `pausedImage`, its layer `disk`) saved
 * into `imageDir` as a running one would be: the state hard-linked (a resume removes only its
 * own name; nothing writes a state once saved), the layer copied, the saved VM under it kept.
 */
export async function copyPaused(
  pausedImage: string,
  disk: string,
  imageDir: string,
  refer?: (backing: string, owner: string, holder: string) => Promise<void>,
): Promise<void> {
  const { backing } = JSON.parse(await readFile(join(pausedImage, 'vm.json'), 'utf8')) as {
    backing?: string;
  };
  await link(join(pausedImage, 'state'), join(imageDir, 'state')).catch(
    async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EXDEV') throw err;
      await copyFile(join(pausedImage, 'state'), join(imageDir, 'state')); // snapshots on another filesystem
    },
  );
  await run('cp', ['--sparse=always', disk, join(imageDir, 'disk.qcow2')], { timeoutMs: 600_000 });
  await writeFile(join(imageDir, 'vm.json'), JSON.stringify({ backing }));
  if (backing) await refer?.(backing, ownerOf(imageDir), imageDir);
}
