export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export const logLevels: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

/** One line of a sandbox's log, as E2B's logs endpoints return it (spec 2.13). */
export interface SandboxLogEntry {
  /** Epoch milliseconds. */
  timestamp: number;
  level: LogLevel;
  message: string;
  fields: Record<string, string>;
}

const MAX_MESSAGE = 4096;
const MAX_FIELD = 1024;

/** An entry with its message and fields cut to their bounds. */
export function boundedEntry(
  timestamp: number,
  level: LogLevel,
  message: string,
  fields: Record<string, string>,
): SandboxLogEntry {
  return {
    timestamp,
    level,
    message: message.slice(0, MAX_MESSAGE),
    fields: Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, v.slice(0, MAX_FIELD)])),
  };
}

/** What the routes use: this file's in-memory log, or the SQLite one (`sandbox-log-sqlite.ts`). */
export type SandboxLog = Pick<ReturnType<typeof createSandboxLog>, 'append' | 'entries' | 'stopped'>;

/**
 * What happened to each sandbox, bounded: who created, connected to, changed and killed it
 * (with the API key's id), why it stopped, and what its runtime and agent wrote to stderr.
 * Each sandbox keeps its last `perSandbox` entries; a stopped sandbox's log stays readable
 * until `keepGone` newer ones have stopped, so "why did it die?" can still be asked.
 * In memory; Cove keeps it in SQLite instead (`sandbox-log-sqlite.ts`), across restarts.
 */
export function createSandboxLog(opts: { perSandbox?: number; keepGone?: number; now?: () => number } = {}) {
  const perSandbox = opts.perSandbox ?? 1000;
  const keepGone = opts.keepGone ?? 100;
  const now = opts.now ?? Date.now;
  const logs = new Map<string, SandboxLogEntry[]>();
  const gone: string[] = [];

  return {
    append(id: string, level: LogLevel, message: string, fields: Record<string, string> = {}): void {
      let entries = logs.get(id);
      if (!entries) logs.set(id, (entries = []));
      entries.push(boundedEntry(now(), level, message, fields));
      if (entries.length > perSandbox) entries.splice(0, entries.length - perSandbox);
    },

    /** Oldest first; undefined for a sandbox this process never logged (or forgot). */
    entries(id: string): SandboxLogEntry[] | undefined {
      return logs.get(id);
    },

    /** The sandbox stopped: its log now counts against `keepGone`. */
    stopped(id: string): void {
      if (!logs.has(id) || gone.includes(id)) return;
      gone.push(id);
      while (gone.length > keepGone) logs.delete(gone.shift()!);
    },
  };
}
