import { CoveError } from '../core/errors.ts';
import type { VolumeMountRecord } from '../store/store.ts';

/** At most this many volumes per sandbox: each is a mount and a host-side directory. */
export const MAX_VOLUME_MOUNTS = 16;

/**
 * Where a volume may not be mounted, with the reason: reviewed data, as the seccomp list is.
 * Each entry refuses the path itself and everything below it; `/` only itself.
 */
export const forbiddenMountPaths: ReadonlyArray<{ path: string; why: string }> = [
  { path: '/', why: 'the root filesystem is the sandbox itself' },
  { path: '/proc', why: 'the kernel interface: covering it would unmask or hide what the runtime masked' },
  { path: '/sys', why: 'the kernel interface, read-only in the sandbox' },
  { path: '/dev', why: 'device nodes the runtime made' },
  { path: '/.cove', why: "the agent's binary and socket: the host's channel into the sandbox" },
];

const SEGMENT = /^[A-Za-z0-9._@+=,:-]{1,255}$/;

/**
 * A mount path as the caller wrote it, checked and normalised: absolute, no `.` or `..`
 * segments (refused, not resolved: a caller who writes them means something else), printable
 * segments, nothing under a forbidden path. Symlinks inside the sandbox are the runtime's to
 * resolve, inside the sandbox's root (oci/spec.ts withVolumes).
 */
export function checkMountPath(raw: string): string {
  if (!raw.startsWith('/'))
    throw new CoveError('invalid_argument', `volumeMounts: path ${JSON.stringify(raw)} is not absolute`);
  const segments = raw.split('/').filter((s) => s !== '');
  for (const s of segments) {
    if (s === '.' || s === '..')
      throw new CoveError('invalid_argument', `volumeMounts: path ${raw} may not contain "${s}"`);
    if (!SEGMENT.test(s))
      throw new CoveError(
        'invalid_argument',
        `volumeMounts: path ${JSON.stringify(raw)}: use letters, digits and ._@+=,:- in names`,
      );
  }
  const path = `/${segments.join('/')}`;
  if (path.length > 1024) throw new CoveError('invalid_argument', 'volumeMounts: path is too long');
  for (const f of forbiddenMountPaths) {
    const under = f.path === '/' ? path === '/' : path === f.path || path.startsWith(`${f.path}/`);
    if (under) throw new CoveError('invalid_argument', `volumeMounts: cannot mount at ${path}: ${f.why}`);
  }
  return path;
}

/**
 * Checks a create's `volumeMounts` and resolves each name to a volume of the caller's
 * (`lookup` throws for an unknown one): at most MAX_VOLUME_MOUNTS, no path twice, and no path
 * inside another (a mount would cover or be covered by the other).
 */
export function resolveVolumeMounts(
  raw: ReadonlyArray<{ name: string; path: string }>,
  lookup: (name: string) => string,
): VolumeMountRecord[] {
  if (raw.length > MAX_VOLUME_MOUNTS)
    throw new CoveError('invalid_argument', `volumeMounts: at most ${MAX_VOLUME_MOUNTS} volumes per sandbox`);
  const mounts = raw.map((m) => ({ name: m.name, path: checkMountPath(m.path), volumeId: lookup(m.name) }));
  for (const a of mounts)
    for (const b of mounts)
      if (a !== b && (a.path === b.path || b.path.startsWith(`${a.path}/`)))
        throw new CoveError('invalid_argument', `volumeMounts: ${b.path} overlaps ${a.path}`);
  return mounts;
}
