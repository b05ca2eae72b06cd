import { randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { newSandboxId } from '../core/ids.ts';
import { isMountPoint, makeImage, mountImage, unmountImage } from './image.ts';
import { migrateToImage } from './migrate.ts';

/** One volume as kept on disk in `<dir>/<id>/volume.json`; its files are in `<dir>/<id>/data`. */
export interface VolumeRecord {
  id: string;
  name: string;
  /** The API key id that created it: only that key sees, uses or deletes it. */
  owner: string;
  /** The volume-content API's bearer token (spec 2.16): returned by create and get, as E2B does. */
  token: string;
  createdAt: string;
  /** Its quota in bytes: the room its filesystem (image.ts) was made with. Absent in older records. */
  sizeLimitBytes?: number;
}

export interface VolumeStoreOptions {
  /** The room of each new volume's filesystem (COVE_VOLUME_SIZE_MB). */
  sizeLimitBytes: number;
  /** A sandbox (running, paused or being made) that mounts the volume, if any: it cannot be deleted then. */
  inUse?: (volumeId: string) => string | undefined;
}

/** Names are referenced by `volumeMounts[].name`, so they are unique per key and path-safe. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** A volume id has a sandbox id's shape: lowercase alphanumerics, nothing a path could use. */
const ID = /^[a-z][a-z0-9]{19}$/;
const RECORD = 'volume.json';
const IMAGE = 'volume.img';

/**
 * The volumes of this Cove: one directory each, holding the volume's filesystem image
 * (`volume.img`, image.ts), loop-mounted at `data/` while Cove runs, and its record, written
 * last (by rename), so that a crash half-way through a create leaves a directory without a
 * record, which `open` removes; a delete renames the directory out of the way first, so it is
 * gone at once and a crash in the middle leaves a `.deleting-*` directory that `open` removes
 * too. Nothing is ever removed recursively while a filesystem is mounted below it.
 */
export class VolumeStore {
  readonly dir: string;
  readonly #records = new Map<string, VolumeRecord>();
  readonly #opts: VolumeStoreOptions;

  private constructor(dir: string, opts: VolumeStoreOptions) {
    this.dir = dir;
    this.#opts = opts;
  }

  /** Opens the store and mounts every volume's filesystem (a volume of a Cove before images is moved into one). */
  static async open(dir: string, opts: VolumeStoreOptions): Promise<VolumeStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new VolumeStore(dir, opts);
    for (const entry of await readdir(dir)) {
      const home = join(dir, entry);
      const raw = await readFile(join(home, RECORD), 'utf8').catch(() => undefined);
      if (raw === undefined || !ID.test(entry)) {
        await removeVolumeDir(home); // half-made or half-deleted
        continue;
      }
      const record = JSON.parse(raw) as VolumeRecord;
      if (!existsSync(join(home, IMAGE)))
        await migrateToImage(home, IMAGE, opts.sizeLimitBytes, (file, at, bytes) =>
          makeImage(file, at, bytes),
        );
      await mountImage(join(home, IMAGE), store.dataDir(record.id));
      store.#records.set(record.id, record);
    }
    return store;
  }

  /** Unmounts every volume's filesystem from Cove's view; sandboxes that mount one keep theirs. */
  async close(): Promise<void> {
    for (const id of this.#records.keys()) await unmountImage(this.dataDir(id));
  }

  /** The host path of a volume's files, for a sandbox's mount; not_found once it is deleted. */
  mountSource(id: string): string {
    if (!this.#records.has(id)) throw new CoveError('not_found', `volume ${id} not found`);
    return this.dataDir(id);
  }

  dataDir(id: string): string {
    return join(this.dir, id, 'data');
  }

  async create(owner: string, name: string): Promise<VolumeRecord> {
    if (!NAME.test(name))
      throw new CoveError(
        'invalid_argument',
        'name: 1 to 63 letters, digits, ".", "_" or "-", starting with a letter or digit',
      );
    if (this.list(owner).some((v) => v.name === name))
      throw new CoveError('already_exists', `a volume named ${name} already exists`);
    const record: VolumeRecord = {
      id: newSandboxId(),
      name,
      owner,
      token: `vol_${randomBytes(32).toString('hex')}`,
      createdAt: new Date().toISOString(),
      sizeLimitBytes: this.#opts.sizeLimitBytes,
    };
    const home = join(this.dir, record.id);
    try {
      await mkdir(home, { mode: 0o711 });
      await makeImage(join(home, IMAGE), this.dataDir(record.id), this.#opts.sizeLimitBytes);
      await writeFile(join(home, `${RECORD}.tmp`), JSON.stringify(record), { mode: 0o600 });
      await rename(join(home, `${RECORD}.tmp`), join(home, RECORD));
    } catch (err) {
      await removeVolumeDir(home);
      throw err;
    }
    this.#records.set(record.id, record);
    return record;
  }

  list(owner: string): VolumeRecord[] {
    return [...this.#records.values()]
      .filter((v) => v.owner === owner)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** The caller's volume; another key's volume is as unknown as a missing one. */
  get(owner: string, id: string): VolumeRecord {
    const record = this.#records.get(id);
    if (!record || record.owner !== owner) throw new CoveError('not_found', `volume ${id} not found`);
    return record;
  }

  /** The volume that `token` opens, for the content API; anything else is a 401. */
  byToken(id: string, token: string | undefined): VolumeRecord {
    const record = this.#records.get(id);
    const given = Buffer.from(token ?? '');
    const expected = Buffer.from(record?.token ?? '');
    if (!record || given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new CoveError('unauthenticated', 'invalid volume token');
    return record;
  }

  /**
   * Deletes a volume no sandbox mounts (conflict otherwise). The check and the removal from
   * the map happen in one turn, before any await: a create that records its sandbox's mounts
   * before it asks for `mountSource` (manager) either is seen here or finds the volume gone.
   */
  async delete(owner: string, id: string): Promise<void> {
    this.get(owner, id);
    const user = this.#opts.inUse?.(id);
    if (user !== undefined)
      throw new CoveError('conflict', `volume ${id} is mounted by sandbox ${user}: kill it first`);
    this.#records.delete(id);
    const doomed = join(this.dir, `.deleting-${id}-${randomBytes(4).toString('hex')}`);
    await rename(join(this.dir, id), doomed);
    await removeVolumeDir(doomed);
  }
}

/** Removes a volume's directory: its filesystem unmounted first, never removed through a mount. */
async function removeVolumeDir(home: string): Promise<void> {
  const data = join(home, 'data');
  await unmountImage(data);
  if (await isMountPoint(data)) throw new CoveError('internal', `${data} is still mounted: not removed`);
  await rm(home, { recursive: true, force: true });
}
