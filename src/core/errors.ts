/**
 * The closed set of errors Cove raises. Deep code throws a CoveError with a code and context;
 * the edges (HTTP, Connect, CLI) map the code once, through the tables in this file, so that no
 * call site picks a status code of its own. Anything that is not a CoveError is an internal
 * error: logged once with its stack, and answered with a message that reveals nothing.
 */
export type ErrorCode =
  | 'invalid_argument'
  | 'not_found'
  | 'already_exists'
  | 'conflict'
  | 'unauthenticated'
  | 'permission_denied'
  | 'resource_exhausted'
  | 'insufficient_storage'
  | 'unavailable'
  | 'deadline_exceeded'
  | 'internal';

export class CoveError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CoveError';
    this.code = code;
  }
}

/** HTTP status for each code; E2B's REST API and envd use these. */
export const httpStatus = {
  invalid_argument: 400,
  not_found: 404,
  already_exists: 409,
  conflict: 409,
  unauthenticated: 401,
  permission_denied: 403,
  resource_exhausted: 429,
  // Not 429: the SDK retries a 429, and a disk budget does not free itself in seconds.
  insufficient_storage: 507,
  unavailable: 503,
  deadline_exceeded: 504,
  internal: 500,
} as const satisfies Record<ErrorCode, number>;

/** Connect RPC code for each code (envd's services); names as the Connect protocol spells them. */
export const connectCode = {
  invalid_argument: 'invalid_argument',
  not_found: 'not_found',
  already_exists: 'already_exists',
  conflict: 'aborted',
  unauthenticated: 'unauthenticated',
  permission_denied: 'permission_denied',
  resource_exhausted: 'resource_exhausted',
  insufficient_storage: 'resource_exhausted',
  unavailable: 'unavailable',
  deadline_exceeded: 'deadline_exceeded',
  internal: 'internal',
} as const satisfies Record<ErrorCode, string>;

/** Process exit status for the CLI: distinct per class so scripts can tell them apart. */
export const exitStatus = {
  invalid_argument: 2,
  not_found: 3,
  already_exists: 4,
  conflict: 4,
  unauthenticated: 5,
  permission_denied: 5,
  resource_exhausted: 6,
  insufficient_storage: 6,
  unavailable: 7,
  deadline_exceeded: 8,
  internal: 1,
} as const satisfies Record<ErrorCode, number>;

export function isCoveError(err: unknown, code?: ErrorCode): err is CoveError {
  return err instanceof CoveError && (code === undefined || err.code === code);
}

/** Errors of the kernel (errno names, as Node and the agent report them) mapped to codes. */
export function codeForErrno(errno: string): ErrorCode {
  switch (errno) {
    case 'ENOENT':
    case 'ESRCH':
      return 'not_found';
    case 'EEXIST':
    case 'ENOTEMPTY':
      return 'already_exists';
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return 'permission_denied';
    case 'ENOTDIR':
    case 'EISDIR':
    case 'EINVAL':
    case 'ENAMETOOLONG':
    case 'ELOOP':
    case 'EXDEV':
      return 'invalid_argument';
    case 'ENOSPC':
    case 'EDQUOT':
    case 'EMFILE':
    case 'ENFILE':
    case 'ENOMEM':
    case 'EAGAIN':
      return 'resource_exhausted';
    default:
      return 'internal';
  }
}
