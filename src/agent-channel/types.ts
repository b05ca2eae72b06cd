/** The host's view of one sandbox's agent. The wire contract is spec/agent-protocol.md. */

export interface FsUser {
  uid: number;
  gid: number;
  /**
   * Permission checks pass as root's would while what is created (files, parents) belongs to
   * uid/gid, and a written file becomes theirs: E2B envd's semantics (it runs as root and
   * chowns). Without it the kernel applies the user's own permissions.
   */
  elevated?: boolean;
}

export interface SpawnOptions {
  argv: string[];
  /** The complete environment of the child: the agent adds nothing (compose PATH, HOME, ...). */
  env: Record<string, string>;
  /** Absolute; entered as the child's user (a cwd it cannot enter fails the spawn). */
  cwd: string;
  uid: number;
  gid: number;
  groups?: number[];
  pty?: { cols: number; rows: number };
  /** true: a pipe fed by write()/closeStdin(); false or absent: /dev/null. */
  stdin?: boolean;
  /** Opaque, ≤ 64 bytes, returned by listProcesses (E2B's process tag). */
  tag?: string;
}

export interface ProcessHandlers {
  onData(stream: 'stdout' | 'stderr' | 'pty', data: Buffer): void;
  /** exitCode: the exit status, or 128+signo when killed by a signal (then signal is set). */
  onExit(result: { exitCode: number; signal?: string }): void;
  /**
   * The output stream ended without an exit: the connection closed, or another attach() took
   * the process over. The process keeps running; attach() again to follow it.
   */
  onDetach?(err: Error): void;
}

export interface AgentProcess {
  readonly pid: number;
  readonly pty: boolean;
  /** Resolves once the bytes are in the pipe/pty (so sequential writes stay in order). */
  write(data: Buffer): Promise<void>;
  closeStdin(): Promise<void>;
  /** To the whole process group by default (the child is a session leader); group:false targets the pid only. */
  signal(
    signal: 'SIGKILL' | 'SIGTERM' | 'SIGINT' | 'SIGHUP' | number,
    opts?: { group?: boolean },
  ): Promise<void>;
  resize(cols: number, rows: number): Promise<void>;
}

export interface FileInfo {
  name: string;
  path: string;
  /** lstat's type: a symlink is 'symlink'; targetType tells what it points to. */
  type: 'file' | 'dir' | 'symlink' | 'other';
  size: number;
  /** Permission bits (st_mode & 0o7777) of the entry itself. */
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** For a symlink: realpath() when it resolves, else the raw link text. */
  symlinkTarget?: string;
  /** For a symlink, the type and mode of its target (undefined when dangling); else as type/mode. */
  targetType?: 'file' | 'dir' | 'symlink' | 'other';
  targetMode?: number;
  /** E2B metadata: the `user.e2b.*` xattrs (of the target, for a symlink), prefix stripped. */
  metadata?: Record<string, string>;
}

export interface WatchEvent {
  type: 'create' | 'write' | 'remove' | 'rename' | 'chmod';
  /** Relative to the watched directory ("sub/file.txt"), as E2B's event name. */
  path: string;
}

export interface Watch {
  /** Ends when close() is called; throws if the watch fails (e.g. the directory is removed). */
  events: AsyncIterable<WatchEvent>;
  close(): Promise<void>;
}

export interface ProcessEntry {
  pid: number;
  argv: string[];
  cwd: string;
  pty: boolean;
  tag?: string;
}

/**
 * One authenticated connection to an agent. Every method rejects with CoveError: errno-based
 * codes for the agent's refusals (codeForErrno), 'invalid_argument' for bad input caught here,
 * and 'unavailable' for everything pending when the connection ends (close(), the agent died, or
 * it sent something invalid — it is never trusted). A closed client stays closed: connect again.
 */
export interface AgentClient {
  spawn(opts: SpawnOptions, handlers: ProcessHandlers): Promise<AgentProcess>;
  listProcesses(): Promise<ProcessEntry[]>;
  /** Moves the process's output to these handlers (no replay); a previous subscriber is detached. */
  attach(pid: number, handlers: ProcessHandlers): Promise<AgentProcess>;
  stat(path: string, user: FsUser): Promise<FileInfo>;
  /** depth 1 = direct children; depth-first pre-order, names sorted; at most 10 000 entries. */
  list(path: string, depth: number, user: FsUser): Promise<FileInfo[]>;
  /** mkdir -p; true when the last component was created, false when it already was a directory. */
  mkdir(path: string, user: FsUser): Promise<boolean>;
  /** Creates the destination's parents; resolves with the destination's info. */
  rename(from: string, to: string, user: FsUser): Promise<FileInfo>;
  /** Recursive, never follows symlinks; a missing path rejects with not_found. */
  remove(path: string, user: FsUser): Promise<void>;
  /** Chunks of at most 512 KiB; never more than a small window is read ahead of the consumer. */
  readFile(path: string, user: FsUser): AsyncIterable<Buffer>;
  /** Creates/truncates (0644 via umask 022), creating parents owned by the user. */
  writeFile(path: string, data: Buffer | AsyncIterable<Buffer>, user: FsUser): Promise<FileInfo>;
  /**
   * Replaces the file's whole E2B metadata set (keys 1..246 bytes, keys and values printable
   * ASCII, Σ(9 + key + value) ≤ 4096, else invalid_argument); {} clears it. On a filesystem
   * without user xattrs nothing is kept and the returned entry shows none.
   */
  setMetadata(path: string, metadata: Record<string, string>, user: FsUser): Promise<FileInfo>;
  watch(path: string, opts: { recursive: boolean }, user: FsUser): Promise<Watch>;
  ping(): Promise<void>;
  close(): void;
  /** Resolves when the connection ends for any reason. */
  readonly closed: Promise<void>;
}
