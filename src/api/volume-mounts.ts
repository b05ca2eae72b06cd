import { CoveError } from '../core/errors.ts';
import type { VolumeMountRecord } from '../store/store.ts';
import { resolveVolumeMounts } from '../volumes/mount-paths.ts';
import type { VolumeStore } from '../volumes/store.ts';

/**
 * A create's `volumeMounts` (spec 2.3: `[{name, path}]`, names of the caller's own volumes),
 * checked and resolved to volume ids; undefined when there are none. Another key's volume is
 * as unknown as a missing one.
 */
export function createVolumeMounts(
  store: VolumeStore | undefined,
  owner: string,
  raw: ReadonlyArray<{ name: string; path: string }> | null | undefined,
): VolumeMountRecord[] | undefined {
  if (!raw?.length) return undefined;
  if (!store) throw new CoveError('invalid_argument', 'volumeMounts: this Cove serves no volumes');
  const mine = store.list(owner);
  return resolveVolumeMounts(raw, (name) => {
    const volume = mine.find((v) => v.name === name);
    if (!volume)
      throw new CoveError('invalid_argument', `volumeMounts: no volume named ${JSON.stringify(name)}`);
    return volume.id;
  });
}

/**
 * Mounts a new sandbox takes over from where it starts (a fork's source, a snapshot), checked
 * again for the caller: each volume must still exist and be one of the caller's. A volume
 * that is gone is a clear 400 before anything is made, never a mount silently dropped.
 */
export function inheritedVolumeMounts(
  store: VolumeStore | undefined,
  owner: string,
  mounts: ReadonlyArray<VolumeMountRecord> | undefined,
  from: string,
): VolumeMountRecord[] | undefined {
  if (!mounts?.length) return undefined;
  const mine = new Set(store?.list(owner).map((v) => v.id));
  for (const m of mounts)
    if (!mine.has(m.volumeId))
      throw new CoveError(
        'invalid_argument',
        `volumeMounts: volume ${JSON.stringify(m.name)}, mounted at ${m.path} in ${from}, no longer exists` +
          ' (or is not one of yours): name the volumes to mount with volumeMounts',
      );
  return mounts.map(({ name, path, volumeId }) => ({ name, path, volumeId }));
}
