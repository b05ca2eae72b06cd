import type { AgentClient, FileInfo } from '../../agent-channel/client.ts';
import { isCoveError } from '../../core/errors.ts';

/** Owner and group names for numeric ids, as the sandbox's own /etc/passwd and /etc/group say. */
export interface OwnerNames {
  user(uid: number): string;
  group(gid: number): string;
}

/** The user databases come from the sandbox: bounded, and parsed without trusting them. */
const MAX_DB = 1 << 20;
/** Sandboxes whose names are kept; the least recently used goes first. */
const MAX_SANDBOXES = 1024;
const ROOT = { uid: 0, gid: 0 };

/** id → name from a passwd/group file: field 0 is the name, field 2 the id; the first wins,
 * as getpwuid does. */
export function parseIds(db: string): Map<number, string> {
  const out = new Map<number, string>();
  for (const line of db.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || !f[0] || !/^\d{1,10}$/.test(f[2]!)) continue;
    const id = Number(f[2]);
    if (!out.has(id)) out.set(id, f[0]);
  }
  return out;
}

function namesFrom(passwd: string, group: string): OwnerNames {
  const users = parseIds(passwd);
  const groups = parseIds(group);
  // Go's os/user falls back to the number when a lookup fails; so does envd.
  return {
    user: (uid) => users.get(uid) ?? String(uid),
    group: (gid) => groups.get(gid) ?? String(gid),
  };
}

async function readDb(agent: AgentClient, path: string): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of agent.readFile(path, ROOT)) {
      size += chunk.length;
      if (size > MAX_DB) return ''; // absurd: every id then shows as a number
      chunks.push(chunk);
    }
  } catch (err) {
    if (isCoveError(err, 'not_found')) return '';
    throw err;
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** What identifies a version of a file without reading it. */
async function stampOf(agent: AgentClient, path: string): Promise<string> {
  const info: FileInfo | undefined = await agent.stat(path, ROOT).catch((err: unknown) => {
    if (isCoveError(err, 'not_found')) return undefined;
    throw err;
  });
  return info ? `${info.mtimeMs}:${info.size}` : '-';
}

export interface OwnerCache {
  /** The names as of now: the files are re-read only when their mtime or size changed. */
  names(sandbox: string, agent: AgentClient): Promise<OwnerNames>;
  /** Drops a sandbox's names (it is gone). */
  forget(sandbox: string): void;
}

export function createOwnerCache(): OwnerCache {
  const cache = new Map<string, { stamp: string; names: OwnerNames }>();
  return {
    async names(sandbox, agent) {
      const stamp = (await Promise.all([stampOf(agent, '/etc/passwd'), stampOf(agent, '/etc/group')])).join(
        '|',
      );
      const hit = cache.get(sandbox);
      cache.delete(sandbox);
      if (hit?.stamp === stamp) {
        cache.set(sandbox, hit);
        return hit.names;
      }
      const [passwd, group] = await Promise.all([readDb(agent, '/etc/passwd'), readDb(agent, '/etc/group')]);
      const entry = { stamp, names: namesFrom(passwd, group) };
      cache.set(sandbox, entry);
      if (cache.size > MAX_SANDBOXES) cache.delete(cache.keys().next().value!);
      return entry.names;
    },
    forget(sandbox) {
      cache.delete(sandbox);
    },
  };
}
