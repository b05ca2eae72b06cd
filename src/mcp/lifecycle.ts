import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { McpDeps, McpSession } from './deps.ts';
import { guarded, json } from './result.ts';
import { sandboxSummary } from './sandboxes.ts';

const sandboxId = z.string().min(1).max(128).describe('The sandbox id');

/** sandbox_pause and sandbox_resume: the manager's pause and resume, as the REST API calls them. */
export function registerLifecycleTools(server: McpServer, deps: McpDeps, session: McpSession): void {
  const { manager, sandboxLog, log } = deps;

  server.registerTool(
    'sandbox_pause',
    {
      title: 'Pause a sandbox',
      description:
        'Pauses a running sandbox: its processes stop, and its files (and memory, where the runtime ' +
        'can keep it) are kept until sandbox_resume. A paused sandbox does not time out. Commands and ' +
        'file tools refuse a paused sandbox.',
      inputSchema: {
        sandboxId,
        memory: z
          .boolean()
          .optional()
          .describe('false: keep only the files; resume then restarts it from them (default true)'),
      },
    },
    guarded(log, 'sandbox_pause', async (args) => {
      sandboxLog.append(args.sandboxId, 'info', 'pause requested', { via: 'mcp', apiKey: session.keyId });
      const info = await manager.pause(args.sandboxId, { memory: args.memory ?? true });
      sandboxLog.append(args.sandboxId, 'info', 'sandbox paused', { as: info.paused ?? 'unknown' });
      return json({ ...sandboxSummary(info), pausedAs: info.paused ?? null });
    }),
  );

  server.registerTool(
    'sandbox_resume',
    {
      title: 'Resume a sandbox',
      description:
        'Brings a paused sandbox back, with the processes it had when its memory was kept; it is then ' +
        'killed `timeoutSeconds` from now. On a running sandbox it only extends the timeout.',
      inputSchema: {
        sandboxId,
        timeoutSeconds: z.number().int().positive().optional().describe('Seconds until it is killed (300)'),
      },
    },
    guarded(log, 'sandbox_resume', async (args) => {
      const { info, resumed } = await manager.resume(args.sandboxId, {
        timeoutMs: (args.timeoutSeconds ?? 300) * 1000,
      });
      if (resumed)
        sandboxLog.append(info.id, 'info', 'sandbox resumed', { via: 'mcp', apiKey: session.keyId });
      return json({ ...sandboxSummary(info), resumed });
    }),
  );
}
