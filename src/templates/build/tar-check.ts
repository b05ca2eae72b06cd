import { posix } from 'node:path';
import { list } from 'tar';
import { CoveError } from '../../core/errors.ts';

const ALLOWED = new Set(['File', 'OldFile', 'ContiguousFile', 'Directory', 'SymbolicLink', 'Link']);

/** Whether a relative path stays inside the folder it is relative to. */
function inside(path: string): boolean {
  const n = posix.normalize(path);
  return !posix.isAbsolute(path) && n !== '..' && !n.startsWith('../');
}

/**
 * Refuses an uploaded COPY archive (the SDK's tar, gzipped or not) unless every entry stays in
 * the folder it is extracted to: no absolute paths, no `..`, no hard link pointing out, no
 * devices or fifos. The archive is extracted inside the build sandbox anyway; this makes a
 * hostile or broken upload a clear error before any step runs. A symbolic link may point
 * anywhere, as in E2B's and Docker's COPY (the SDK uploads a context's absolute links as they
 * are): it is only a name, resolved inside the sandbox, and a RUN step can make the same link.
 */
export async function checkUploadTar(file: string): Promise<void> {
  const bad: string[] = [];
  const note = (why: string) => {
    if (bad.length < 5) bad.push(why);
  };
  try {
    await list({
      file,
      strict: true,
      onReadEntry: (entry) => {
        const path = entry.path;
        if (!ALLOWED.has(entry.type)) note(`${path}: a ${entry.type} entry`);
        else if (!inside(path)) note(`${path}: the path leaves the destination`);
        else if (entry.type === 'Link' && !inside(entry.linkpath ?? '')) {
          note(`${path}: a hard link to ${entry.linkpath ?? ''}, outside the destination`);
        }
      },
    });
  } catch (err) {
    throw new CoveError('invalid_argument', `the uploaded archive is not a valid tar: ${String(err)}`, {
      cause: err,
    });
  }
  if (bad.length > 0)
    throw new CoveError('invalid_argument', `the uploaded archive is refused: ${bad.join('; ')}`);
}
