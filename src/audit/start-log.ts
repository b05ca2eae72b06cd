import type { AgentClient } from '../agent-channel/client.ts';
import type { SandboxLog } from './sandbox-log.ts';

/** Read at most this much of the log: the sandbox may have made it endless (a growing file). */
const MAX_READ = 1 << 20;
const TAIL = 16 * 1024;

/**
 * Copies the last lines of a template's start command's log (its output: the command runs
 * with stdout and stderr appended to that file inside the sandbox, manager/startup.ts) into
 * the sandbox's log, once the sandbox is handed out. The sandbox owns the file: only a
 * regular file is read (a symlink, FIFO or device could point anywhere or never end), at
 * most 1 MiB of it, and the text is bounded again by the sandbox log.
 */
export async function copyStartLog(
  agent: AgentClient,
  id: string,
  path: string,
  log: SandboxLog,
): Promise<void> {
  const root = { uid: 0, gid: 0 };
  if ((await agent.stat(path, root)).type !== 'file') return;
  let tail = Buffer.alloc(0);
  let read = 0;
  for await (const chunk of agent.readFile(path, root)) {
    tail = Buffer.concat([tail, chunk]).subarray(-TAIL);
    if ((read += chunk.length) >= MAX_READ) break;
  }
  const lines = tail.toString('utf8').split('\n');
  if (read > TAIL) lines.shift(); // cut
  for (const line of lines)
    if (line.trim() !== '') log.append(id, 'info', line.trimEnd(), { source: 'start' });
}
