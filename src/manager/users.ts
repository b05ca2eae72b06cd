import type { AgentClient } from '../agent-channel/client.ts';
import { CoveError } from '../core/errors.ts';
import type { Template } from '../templates/index.ts';
import { spawnOptions } from './exec.ts';

export interface SandboxUser {
  name: string;
  uid: number;
  gid: number;
  groups: number[];
  home: string;
  shell: string;
}

const MAX_DB = 1 << 20; // /etc/passwd and /etc/group come from the sandbox: bounded, parsed defensively

/**
 * Resolves a user name (or a numeric uid) from the sandbox's own /etc/passwd and /etc/group,
 * which the sandbox may have changed: both are untrusted input.
 */
export function resolveUser(name: string, passwd: string, group: string): SandboxUser {
  if (passwd.length > MAX_DB || group.length > MAX_DB)
    throw new CoveError('invalid_argument', 'user database too large');
  const numeric = /^\d+$/.test(name) ? Number(name) : undefined;
  for (const line of passwd.split('\n')) {
    const f = line.split(':');
    if (f.length < 7) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || uid < 0 || gid < 0) continue;
    if (f[0] !== name && uid !== numeric) continue;
    const user = f[0]!;
    const groups = new Set<number>([gid]);
    for (const g of group.split('\n')) {
      const gf = g.split(':');
      const id = Number(gf[2]);
      if (gf.length >= 4 && Number.isInteger(id) && id >= 0 && gf[3]!.split(',').includes(user))
        groups.add(id);
    }
    return {
      name: user,
      uid,
      gid,
      groups: [...groups].slice(0, 64),
      home: f[5] || '/',
      shell: f[6] || '/bin/sh',
    };
  }
  if (numeric !== undefined)
    return { name, uid: numeric, gid: numeric, groups: [numeric], home: '/', shell: '/bin/sh' };
  throw new CoveError('invalid_argument', `user ${name} does not exist in the sandbox`);
}

/** The sandbox's /etc/passwd and /etc/group, read as root through its agent, bounded. */
export async function readUserDb(agent: AgentClient): Promise<{ passwd: string; group: string }> {
  const read = async (path: string): Promise<string> => {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of agent.readFile(path, { uid: 0, gid: 0 })) {
      size += chunk.length;
      if (size > MAX_DB)
        throw new CoveError('invalid_argument', `${path} in the sandbox is larger than 1 MiB`);
      chunks.push(chunk);
    }
    return Buffer.concat(chunks).toString('utf8');
  };
  const [passwd, group] = await Promise.all([read('/etc/passwd'), read('/etc/group')]);
  return { passwd, group };
}

/** `name` resolved once per sandbox (`cache`), shared by concurrent callers; a failure is not kept. */
export function cachedUser(
  cache: Map<string, Promise<SandboxUser>>,
  name: string,
  agent: () => AgentClient,
): Promise<SandboxUser> {
  const cached = cache.get(name);
  if (cached) return cached;
  const resolved = readUserDb(agent()).then(({ passwd, group }) => resolveUser(name, passwd, group));
  cache.set(name, resolved);
  resolved.catch(() => cache.get(name) === resolved && cache.delete(name));
  return resolved;
}

/** The first command's user, read while the sandbox waits in the pool or behind the create's
 * reply instead of by that command (two agent round trips); nothing ran in the sandbox yet. */
export function prefetchUser(...args: Parameters<typeof cachedUser>): Promise<unknown> {
  return cachedUser(...args).catch(() => undefined);
}

/** How long a pooled sandbox's warm-up shell may take before the pool stops waiting for it. */
const WARM_UP_MS = 2_000;

/**
 * For a sandbox about to wait in the pool: its default user, then one `bash -l -c true` as
 * that user, which is what the e2b SDK runs every command through. A fresh overlay's first
 * login shell looks up bash, its libraries and the profile files cold (~1-2 ms more than the
 * next one, measured through the manager); here that is paid before any claim. The shell is
 * the sandbox's first process and is audited like a template's start command (keyless); it
 * leaves nothing behind. Failures (no bash in the template) are ignored.
 */
export async function prefetchForClaim(
  cache: Map<string, Promise<SandboxUser>>,
  template: Template,
  agent: () => AgentClient,
): Promise<void> {
  const who = await cachedUser(cache, template.defaultUser.name, agent).catch(() => undefined);
  if (!who) return;
  const options = spawnOptions(template, who, {}, { argv: ['/bin/bash', '-l', '-c', 'true'] });
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, WARM_UP_MS);
    const done = () => (clearTimeout(timer), resolve());
    agent()
      .spawn(options, { onData() {}, onExit: done, onDetach: done })
      .catch(done);
  });
}
