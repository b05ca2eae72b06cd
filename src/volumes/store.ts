import { randomBytes, timingSafeEqual } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { newSandboxId } from '../core/ids.ts';

/** One volume as kept on disk in `<dir>/<id>/volume.json`; its files are in `<dir>/<id>/data`. */
export interface VolumeRecord {
  id: string;
  name: string;
  /** The API key id that created it: only that key sees, uses or deletes it. */
  owner: string;
  /** The volume-content API's bearer token (spec 2.16): returned by create and get, as E2B does. */
  token: string;
  createdAt: string;
}

/** Names are referenced by `volumeMounts[].name`, so they are unique per key and path-safe. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
/** A volume id has a sandbox id's shape: lowercase alphanumerics, nothing a path could use. */
const ID = /^[a-z][a-z0-9]{19}$/;
const RECORD = 'volume.json';

/**
 * The volumes of this Cove: one directory each, its record written last (by rename), so that
 * a crash half-way through a create leaves a directory without a record, which `open`
 * removes; a delete renames the directory out of the way first, so it is gone at once and a
 * crash in the middle leaves a `.deleting-*` directory that `open` removes too.
 */
export class VolumeStore {
  readonly dir: string;
  readonly #records = new Map<string, VolumeRecord>();

  private constructor(dir: string) {
    this.dir = dir;
  }

  static async open(dir: string): Promise<VolumeStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const store = new VolumeStore(dir);
    for (const entry of await readdir(dir)) {
      const raw = await readFile(join(dir, entry, RECORD), 'utf8').catch(() => undefined);
      if (raw === undefined || !ID.test(entry)) {
        await rm(join(dir, entry), { recursive: true, force: true }); // half-made or half-deleted
        continue;
      }
      const record = JSON.parse(raw) as VolumeRecord;
      store.#records.set(record.id, record);
    }
    return store;
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
    };
    const home = join(this.dir, record.id);
    try {
      await mkdir(join(home, 'data'), { recursive: true, mode: 0o755 });
      await writeFile(join(home, `${RECORD}.tmp`), JSON.stringify(record), { mode: 0o600 });
      await rename(join(home, `${RECORD}.tmp`), join(home, RECORD));
    } catch (err) {
      await rm(home, { recursive: true, force: true });
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

  async delete(owner: string, id: string): Promise<void> {
    this.get(owner, id);
    const doomed = join(this.dir, `.deleting-${id}-${randomBytes(4).toString('hex')}`);
    await rename(join(this.dir, id), doomed);
    this.#records.delete(id);
    await rm(doomed, { recursive: true, force: true });
  }
}
