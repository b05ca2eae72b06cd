import { posix } from 'node:path';
import { CoveError } from '../../core/errors.ts';

/** The agent's bound on a path (spec/agent-protocol.md §1): longer is refused before it travels. */
const MAX_PATH_BYTES = 4095;

/**
 * envd's path rules (internal/permissions/path.go): empty is the default workdir (the user's
 * home), `~` and `~/x` are the home, a relative path is joined to the home. Every result is
 * absolute and lexically clean (`..` resolved, no trailing slash). That is only naming: the
 * agent resolves the result inside the sandbox's own root, so neither `..` nor a symlink can
 * name anything outside it.
 */
export function resolvePath(input: string, home: string): string {
  if (input.includes('\0')) throw new CoveError('invalid_argument', 'path must not contain NUL');
  if (Buffer.byteLength(input) > MAX_PATH_BYTES)
    throw new CoveError('invalid_argument', `path is longer than ${MAX_PATH_BYTES} bytes`);
  let path = input === '' ? home : input;
  if (path.startsWith('~')) {
    if (path.length > 1 && path[1] !== '/')
      throw new CoveError('invalid_argument', `cannot expand user-specific home dir in '${input}'`);
    path = home + path.slice(1);
  }
  const abs = posix.normalize(posix.isAbsolute(path) ? path : posix.join(home, path));
  const clean = abs.length > 1 ? abs.replace(/\/+$/, '') : abs;
  if (Buffer.byteLength(clean) > MAX_PATH_BYTES)
    throw new CoveError('invalid_argument', `path is longer than ${MAX_PATH_BYTES} bytes`);
  return clean;
}
