import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { FileInfo, FsUser } from '../agent-channel/client.ts';
import { CoveError } from '../core/errors.ts';
import { resolvePath } from '../envd/filesystem/paths.ts';
import type { McpDeps } from './deps.ts';
import { guarded, json } from './result.ts';

/** The largest file read_file returns: the whole of it travels in one JSON-RPC message. */
export const MAX_READ = 4 * 2 ** 20;
const IMAGE_TYPES: Record<string, string> = {
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
};

const sandboxId = z.string().min(1).max(128).describe('The sandbox id');
const path = z
  .string()
  .max(4095)
  .describe("A path in the sandbox; a relative one (or `~/…`) is taken from the user's home");
const user = z.string().max(64).optional().describe("Act as this user (default: the template's)");

const entry = (f: FileInfo) => ({
  path: f.path,
  type: f.type,
  size: f.size,
  mode: f.mode.toString(8).padStart(4, '0'),
  modified: new Date(f.mtimeMs).toISOString(),
  ...(f.symlinkTarget !== undefined && { symlinkTarget: f.symlinkTarget }),
});

/**
 * read_file, write_file, list_files and remove_file: the agent's file requests, elevated as
 * envd's are (ARCHITECTURE.md, Files), with envd's path rules, so that a file reads the same
 * through MCP, the SDK and `sbx.files`.
 */
export function registerFileTools(server: McpServer, deps: McpDeps): void {
  const { manager, log } = deps;

  async function caller(id: string, name: string | undefined): Promise<{ as: FsUser; home: string }> {
    const who = await manager.user(id, name ?? manager.defaultUser(id));
    return { as: { uid: who.uid, gid: who.gid, elevated: true }, home: who.home };
  }

  server.registerTool(
    'read_file',
    {
      title: 'Read a file',
      description:
        `Reads a file of at most ${MAX_READ / 2 ** 20} MiB from a sandbox. UTF-8 text comes back as text; ` +
        'PNG, JPEG, GIF and WebP files as image content; any other binary file as base64 ' +
        '(`encoding: "base64"`). For a larger file, run_command `head`/`tail` or split it.',
      inputSchema: { sandboxId, path, user },
    },
    guarded(log, 'read_file', async (args) => {
      const { as, home } = await caller(args.sandboxId, args.user);
      const file = resolvePath(args.path, home);
      const agent = manager.agent(args.sandboxId);
      const info = await agent.stat(file, as);
      if ((info.targetType ?? info.type) === 'dir')
        throw new CoveError('invalid_argument', `${file} is a directory: use list_files`);
      const tooLarge = () =>
        new CoveError(
          'invalid_argument',
          `${file} is larger than ${MAX_READ} bytes: read a part with run_command`,
        );
      if (info.size > MAX_READ) throw tooLarge();
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of agent.readFile(file, as)) {
        size += chunk.length;
        if (size > MAX_READ) throw tooLarge(); // it grew since the stat
        chunks.push(chunk);
      }
      const data = Buffer.concat(chunks);
      const mimeType = IMAGE_TYPES[file.slice(file.lastIndexOf('.') + 1).toLowerCase()];
      if (mimeType) return { content: [{ type: 'image', data: data.toString('base64'), mimeType }] };
      try {
        const text = new TextDecoder('utf-8', { fatal: true }).decode(data);
        return { content: [{ type: 'text', text }] };
      } catch {
        return json({ path: file, size, encoding: 'base64', content: data.toString('base64') });
      }
    }),
  );

  server.registerTool(
    'write_file',
    {
      title: 'Write a file',
      description:
        'Creates or replaces a file in a sandbox (parent directories are created), owned by the user. ' +
        'Content is UTF-8 text, or base64 with `encoding: "base64"` for binary data.',
      inputSchema: {
        sandboxId,
        path,
        content: z.string().describe('The whole new content'),
        encoding: z.enum(['utf8', 'base64']).optional().describe('How `content` is encoded (default: utf8)'),
        user,
      },
    },
    guarded(log, 'write_file', async (args) => {
      const { as, home } = await caller(args.sandboxId, args.user);
      const file = resolvePath(args.path, home);
      const data = Buffer.from(args.content, args.encoding === 'base64' ? 'base64' : 'utf8');
      const info = await manager.agent(args.sandboxId).writeFile(file, data, as);
      return json(entry(info));
    }),
  );

  server.registerTool(
    'list_files',
    {
      title: 'List a directory',
      description:
        'Lists a directory of a sandbox: each entry with its path, type (file, dir, symlink, other), size, ' +
        'mode and modification time. `depth` > 1 also lists subdirectories (at most 10 000 entries).',
      inputSchema: {
        sandboxId,
        path: path.optional(),
        depth: z.number().int().min(1).max(16).optional().describe('How many levels (default: 1)'),
        user,
      },
    },
    guarded(log, 'list_files', async (args) => {
      const { as, home } = await caller(args.sandboxId, args.user);
      const dir = resolvePath(args.path ?? '', home);
      const entries = await manager.agent(args.sandboxId).list(dir, args.depth ?? 1, as);
      return json({ path: dir, entries: entries.map(entry) });
    }),
  );

  server.registerTool(
    'remove_file',
    {
      title: 'Remove a file or directory',
      description:
        'Removes a file, or a directory with everything in it (symlinks are removed, not followed).',
      inputSchema: { sandboxId, path, user },
    },
    guarded(log, 'remove_file', async (args) => {
      const { as, home } = await caller(args.sandboxId, args.user);
      const file = resolvePath(args.path, home);
      await manager.agent(args.sandboxId).remove(file, as);
      return json({ path: file, removed: true });
    }),
  );
}
