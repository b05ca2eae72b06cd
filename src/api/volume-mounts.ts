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
