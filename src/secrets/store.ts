import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../core/errors.ts';
import { loadSecretsKey, openParts, sealParts } from './seal.ts';

/** What the API shows of a secret (`Secret`, spec 2.16): never its value. */
export interface SecretInfo {
  secretID: string;
  name: string;
  metadata: Record<string, string>;
  currentVersion: number;
  createdAt: string;
  updatedAt: string;
}

/** On disk: the info, the owner key and every version's value, each sealed with AES-256-GCM. */
interface SecretRecord extends SecretInfo {
  owner: string;
  versions: Array<{ iv: string; tag: string; data: string }>;
}

/** What the SDK's `Secret.fill` can interpolate: no braces, no control characters. */
const NAME = /^[^{}\p{Cc}]{1,128}$/u;
const ID = /^sec_[0-9a-f-]{36}$/;

/**
 * Secrets (spec 2.16), one file per secret in `dir`, written by rename. Values are encrypted
 * with a 32-byte key kept in its own file (`keyFile`, mode 0600, made at first start), so a
 * copy of the secrets directory alone reveals nothing. Nothing here logs a value.
 */
export class SecretStore {
  readonly #dir: string;
  readonly #key: Buffer;
  readonly #records = new Map<string, SecretRecord>();

  private constructor(dir: string, key: Buffer) {
    this.#dir = dir;
    this.#key = key;
  }

  static async open(dir: string, keyFile: string): Promise<SecretStore> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const key = await loadSecretsKey(keyFile);
    const store = new SecretStore(dir, key);
    for (const entry of await readdir(dir)) {
      if (!entry.endsWith('.json')) {
        await rm(join(dir, entry), { force: true }); // a write a crash interrupted
        continue;
      }
      const record = JSON.parse(await readFile(join(dir, entry), 'utf8')) as SecretRecord;
      store.#records.set(record.secretID, record);
    }
    return store;
  }

  async create(
    owner: string,
    name: string,
    value: string,
    metadata: Record<string, string> = {},
  ): Promise<SecretInfo> {
    const record: SecretRecord = { ...newSecretRecord(name, metadata), owner, versions: [this.#seal(value)] };
    if (this.list(owner).some((s) => s.name === record.name))
      throw new CoveError('already_exists', `a secret named ${record.name} already exists`);
    await this.#save(record);
    return info(record);
  }

  /** The owner's secrets, oldest first. */
  list(owner: string): SecretInfo[] {
    return [...this.#records.values()]
      .filter((s) => s.owner === owner)
      .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.secretID.localeCompare(b.secretID))
      .map(info);
  }

  get(owner: string, idOrName: string): SecretInfo {
    return info(this.#find(owner, idOrName));
  }

  /** A new version: the value replaced, metadata too when given. */
  async update(
    owner: string,
    idOrName: string,
    value: string,
    metadata?: Record<string, string>,
  ): Promise<SecretInfo> {
    const old = this.#find(owner, idOrName);
    const record: SecretRecord = {
      ...old,
      ...(metadata && { metadata }),
      currentVersion: old.currentVersion + 1,
      updatedAt: new Date().toISOString(),
      versions: [...old.versions, this.#seal(value)],
    };
    await this.#save(record);
    return info(record);
  }

  async delete(owner: string, idOrName: string): Promise<void> {
    const record = this.#find(owner, idOrName);
    await rm(join(this.#dir, `${record.secretID}.json`), { force: true });
    this.#records.delete(record.secretID);
  }

  /** The current value, for the egress proxy's placeholders (never for the API). */
  value(owner: string, idOrName: string): string {
    const { iv, tag, data } = this.#find(owner, idOrName).versions.at(-1)!;
    const b = (part: string) => Buffer.from(part, 'base64');
    return openParts(this.#key, { iv: b(iv), tag: b(tag), data: b(data) });
  }

  #find(owner: string, idOrName: string): SecretRecord {
    const byId = ID.test(idOrName) ? this.#records.get(idOrName) : undefined;
    const record =
      byId ?? [...this.#records.values()].find((s) => s.owner === owner && s.name === idOrName.toLowerCase());
    if (!record || record.owner !== owner) throw new CoveError('not_found', `secret ${idOrName} not found`);
    return record;
  }

  #seal(value: string): SecretRecord['versions'][number] {
    const { iv, tag, data } = sealParts(this.#key, value);
    return { iv: iv.toString('base64'), tag: tag.toString('base64'), data: data.toString('base64') };
  }

  async #save(record: SecretRecord): Promise<void> {
    const temp = join(this.#dir, `${record.secretID}.tmp-${randomBytes(4).toString('hex')}`);
    await writeFile(temp, JSON.stringify(record), { mode: 0o600 });
    await rename(temp, join(this.#dir, `${record.secretID}.json`));
    this.#records.set(record.secretID, record);
  }
}

const info = (r: SecretRecord): SecretInfo => ({
  secretID: r.secretID,
  name: r.name,
  metadata: r.metadata,
  currentVersion: r.currentVersion,
  createdAt: r.createdAt,
  updatedAt: r.updatedAt,
});

/**
 * A new secret as the API shows it: a fresh id, the name checked and stored in lower case,
 * version 1, made now. This store and the cluster's (src/cluster/secrets.ts) both start so.
 */
export function newSecretRecord(name: string, metadata: Record<string, string> = {}): SecretInfo {
  const now = new Date().toISOString();
  return {
    secretID: `sec_${randomUUID()}`,
    name: secretName(name),
    metadata,
    currentVersion: 1,
    createdAt: now,
    updatedAt: now,
  };
}

/** A secret's name as stored (lower case), or invalid_argument (also for src/cluster/secrets.ts). */
export function secretName(name: string): string {
  const lower = name.toLowerCase();
  if (!NAME.test(lower))
    throw new CoveError(
      'invalid_argument',
      "name: 1 to 128 characters, without '{', '}' or control characters",
    );
  return lower;
}

/** What a secret's id looks like. */
export { ID as SECRET_ID };
