import { posix } from 'node:path';
import { CoveError } from '../core/errors.ts';
import type { Manager } from '../manager/manager.ts';

/**
 * A text file of a sandbox, for memory's document ingest: read through its agent (which
 * resolves the path in the sandbox's own root) with the permissions of the sandbox's default
 * user, so a document is only what that user could read itself. At most `max` bytes, UTF-8.
 */
export async function readSandboxFile(
  manager: Manager,
  id: string,
  path: string,
  max: number,
): Promise<string> {
  const who = await manager.user(id, manager.defaultUser(id));
  const as = { uid: who.uid, gid: who.gid };
  const file = posix.resolve(who.home, path);
  const agent = manager.agent(id);
  const info = await agent.stat(file, as);
  if ((info.targetType ?? info.type) === 'dir')
    throw new CoveError('invalid_argument', `${file} is a directory`);
  const tooLarge = () => new CoveError('invalid_argument', `${file} is larger than ${max} bytes`);
  if (info.size > max) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of agent.readFile(file, as)) {
    size += chunk.length;
    if (size > max) throw tooLarge();
    chunks.push(chunk);
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
  } catch {
    throw new CoveError('invalid_argument', `${file} is not UTF-8 text`);
  }
}
