import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, utimesSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { run } from '../../core/exec.ts';
import { saveState } from './migrate.ts';
import { qemuArgv, type VmArgs } from './qemu.ts';
import type { Vms } from './vm.ts';

/** A template's VM saved once booted: its state, its disk (the clones' backing file) and its RAM. */
export interface SavedVm {
  dir: string;
  state: string;
  disk: string;
  /** Guest RAM (on /dev/shm): clones map it privately, copy-on-write. */
  memory: string;
}

/** What a VM of a template is booted with, less what is each VM's own (sockets, disk, NIC). */
export type BaseArgs = Pick<VmArgs, 'accel' | 'cpus' | 'memoryMiB' | 'kernel' | 'initrd' | 'tscKhz'>;

const TEMPLATE_MAC = '52:54:00:00:00:01';
/** The host user of template VMs' QEMU: just below the sandboxes' uid ranges (1,000,000 on), nobody's. */
const TEMPLATE_VM_USER = { uid: 999_999, gid: 999_999 };
const SETTLE_MS = 300;
/** A saved VM no disk refers to and unused this long is removed (its RAM file holds host memory). */
const UNUSED_MS = 600_000;
/** A build a crash cut short (a live one is younger than its boot timeout). */
const ABANDONED_MS = 3_600_000;

/**
 * Templates' saved VMs (README.md, Starting fast): the first VM of a template (image, size,
 * kernel, initramfs with its agent, QEMU) is booted once with its RAM in a shared file on
 * /dev/shm, without an address (eth0 down), and saved with `x-ignore-shared` (a few KB: its
 * RAM is that file). Every VM of the template is then a clone: QEMU maps the file privately,
 * loads the state and goes on from there, on a qcow2 layer over the saved VM's disk. Cached
 * in `<cacheDir>/vm-snapshots/<key>-<nonce>` (published by a rename; shared by the Coves of a
 * host), where the key hashes everything the saved state depends on. /dev/shm is lost with the
 * host: a key whose RAM file is gone gets a new generation beside the old one, whose disk stays
 * as long as a layer is made on it (a reboot never breaks a paused sandbox or a snapshot). Each clone's disk is named in `refs/`
 * (its qcow2 layer needs the saved disk as long as it exists, a paused sandbox's included);
 * a saved VM no existing disk names is removed (`collect`, at start and every minute: its
 * RAM file takes 100-500 MB of host memory) once its template build is gone (deleted or
 * rebuilt: `<image>.rootfs` names the build), its RAM file is lost, or it went unused for
 * ten minutes; a template image no saved VM uses goes with its build too.
 */
export function createTemplateVms(deps: {
  vms: Vms;
  cacheDir: string;
  /** QEMU's version and the initramfs's hash: a state loads only into the same machine. */
  salt: string;
  bootTimeoutMs: number;
  onBuilt?: (info: { key: string; ms: number }) => void;
}) {
  const { vms } = deps;
  const building = new Map<string, Promise<SavedVm>>();

  function keyOf(base: BaseArgs, image: string): string {
    const shape = qemuArgv({
      ...base,
      append: [],
      agentSocket: 'A',
      qmpSocket: 'Q',
      consoleLog: 'C',
      disk: 'D',
      nic: { mac: TEMPLATE_MAC },
      memoryFile: { path: 'M', share: true },
    });
    return createHash('sha256')
      .update(JSON.stringify([deps.salt, image, shape]))
      .digest('hex')
      .slice(0, 16);
  }

  function saved(dir: string): SavedVm | undefined {
    try {
      const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as { memory: string };
      const vm = { dir, state: join(dir, 'state'), disk: join(dir, 'disk.qcow2'), memory: meta.memory };
      return existsSync(vm.memory) && existsSync(vm.state) && existsSync(vm.disk) ? vm : undefined;
    } catch {
      return undefined;
    }
  }

  /**
   * The saved VM of `key` whose RAM file is there: one generation `<key>-<nonce>` of it (or
   * `<key>`, as made before generations). A generation whose RAM a reboot lost is never
   * rebuilt in place: its disk backs the layers of paused sandboxes and snapshots (refs/).
   */
  function current(key: string): SavedVm | undefined {
    let names: string[];
    try {
      names = readdirSync(root);
    } catch {
      return undefined;
    }
    for (const name of names) {
      if (name !== key && !(name.startsWith(`${key}-`) && !name.includes('.tmp-'))) continue;
      const vm = saved(join(root, name));
      if (vm) return vm;
    }
    return undefined;
  }

  async function build(key: string, base: BaseArgs, image: string): Promise<SavedVm> {
    const found = current(key);
    if (found) return found;
    const started = Date.now();
    const nonce = randomBytes(6).toString('hex');
    // A new generation: nothing another generation holds (its disk above all) is touched.
    const dir = join(root, `${key}-${nonce}`);
    const tmp = join(root, `${key}.tmp-${nonce}`);
    const memory = `/dev/shm/cove-vm-${key}-${nonce}.mem`;
    const id = `.template-${key}-${nonce}`; // a dot: never listed as a sandbox (microvm.ts)
    let published = false;
    try {
      await mkdir(tmp, { recursive: true, mode: 0o700 });
      await run('qemu-img', [
        'create',
        '-q',
        '-f',
        'qcow2',
        '-F',
        'raw',
        '-b',
        image,
        join(tmp, 'disk.qcow2'),
      ]);
      await vms.launch(
        id,
        { bundleDir: tmp },
        {
          ...base,
          append: ['cove.host=cove'],
          agentSocket: join(vms.stateDir(id), 'agent.sock'),
          qmpSocket: vms.qmpPath(id),
          consoleLog: join(tmp, 'console.log'),
          disk: join(tmp, 'disk.qcow2'),
          nic: { mac: TEMPLATE_MAC },
          memoryFile: { path: memory, share: true },
          paused: true,
          runAs: TEMPLATE_VM_USER,
        },
      );
      await vms.bootToAgent(id, deps.bootTimeoutMs);
      await new Promise((r) => setTimeout(r, SETTLE_MS)); // the agent past its start
      await vms.withQmp(id, (q) =>
        saveState(q, join(tmp, 'state'), { ignoreShared: true, timeoutMs: 60_000, socketDir: vms.ioDir(id) }),
      );
      await vms.destroy(id);
      await writeFile(join(tmp, 'meta.json'), JSON.stringify({ memory, key, image, createdAt: Date.now() }));
      await rename(tmp, dir);
      published = true;
      deps.onBuilt?.({ key, ms: Date.now() - started });
      const vm = saved(dir);
      if (!vm) throw new Error(`the saved VM ${dir} is incomplete`);
      return vm;
    } finally {
      await vms.destroy(id).catch(() => undefined);
      await rm(tmp, { recursive: true, force: true });
      if (!published) await rm(memory, { force: true });
    }
  }

  const root = join(deps.cacheDir, 'vm-snapshots');

  /** Whether the template build an image was made of is gone (guest.ts writes `<image>.rootfs`). */
  function buildGone(image: string | undefined): boolean {
    if (!image || !existsSync(image)) return true;
    try {
      return !existsSync(readFileSync(`${image}.rootfs`, 'utf8'));
    } catch {
      return false; // made before the name was written: kept, as its build may be there
    }
  }

  /**
   * Removes saved VMs no existing disk refers to that are of no more use (their template
   * build gone, their RAM file lost, or unused for UNUSED_MS), with their RAM files; then
   * template images whose build is gone and that no saved VM is made on.
   */
  async function collect(): Promise<string[]> {
    const removed: string[] = [];
    const images = new Set<string>();
    for (const name of await readdir(root).catch(() => [] as string[])) {
      const dir = join(root, name);
      if (building.has(name)) continue;
      if (name.includes('.tmp-')) {
        const { mtimeMs } = await stat(dir).catch(() => ({ mtimeMs: Date.now() }));
        if (Date.now() - mtimeMs < ABANDONED_MS) continue;
        await rm(dir, { recursive: true, force: true });
        await rm(`/dev/shm/cove-vm-${name.replace('.tmp-', '-')}.mem`, { force: true });
        continue;
      }
      let used = false;
      for (const ref of await readdir(join(dir, 'refs')).catch(() => [] as string[])) {
        const holder = await readFile(join(dir, 'refs', ref), 'utf8').catch(() => '');
        if (holder && existsSync(holder)) used = true;
        else await rm(join(dir, 'refs', ref), { force: true });
      }
      type Meta = { memory?: string; image?: string };
      const meta: Meta = await readFile(join(dir, 'meta.json'), 'utf8')
        .then((t) => JSON.parse(t) as Meta)
        .catch(() => ({}));
      const age = Date.now() - (await stat(join(dir, 'meta.json')).catch(() => ({ mtimeMs: 0 }))).mtimeMs;
      const useless = age > UNUSED_MS || !saved(dir) || (meta.image !== undefined && buildGone(meta.image));
      if (used || !useless) {
        if (meta.image) images.add(meta.image);
        continue;
      }
      await rm(dir, { recursive: true, force: true });
      if (meta.memory) await rm(meta.memory, { force: true });
      removed.push(name);
    }
    const imageDir = join(deps.cacheDir, 'images');
    for (const name of await readdir(imageDir).catch(() => [] as string[])) {
      const image = join(imageDir, name);
      if (!name.endsWith('.ext4') || images.has(image) || !existsSync(`${image}.rootfs`)) continue;
      if (!buildGone(image)) continue;
      await rm(image, { force: true });
      await rm(`${image}.rootfs`, { force: true });
      removed.push(`image ${name}`);
    }
    return removed;
  }

  return {
    collect,

    /**
     * Records that sandbox `owner`'s disk is backed by the saved VM in `dir` for as long as
     * `holder` (its directory, where its layer and any pause image live) exists; marks it used.
     */
    async refer(dir: string, owner: string, holder: string): Promise<void> {
      await mkdir(join(dir, 'refs'), { recursive: true });
      await writeFile(join(dir, 'refs', owner), holder);
      const now = new Date();
      await utimes(join(dir, 'meta.json'), now, now).catch(() => undefined);
    },

    /** The template's saved VM, booted and saved first when there is none (one build per key at a time). */
    get(base: BaseArgs, image: string): Promise<SavedVm> {
      const key = keyOf(base, image);
      const pending = building.get(key);
      if (pending) return pending;
      const found = current(key);
      if (found) {
        // Used now: the sweep (collect) keeps it until the clone has named its disk in refs/.
        const now = new Date();
        try {
          utimesSync(join(found.dir, 'meta.json'), now, now);
        } catch {
          // removed meanwhile: the clone fails and its create is retried or reported
        }
        return Promise.resolve(found);
      }
      const p = build(key, base, image).finally(() => building.delete(key));
      building.set(key, p);
      return p;
    },
  };
}
