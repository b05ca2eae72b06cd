import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import type { SandboxInfo } from '../manager/types.ts';
import { SESSION_KEY, type McpDeps, type McpSession } from './deps.ts';
import { guarded, json } from './result.ts';

const sandboxId = z.string().min(1).max(128).describe('The sandbox id');
const stringMap = z.record(z.string().max(256), z.string().max(4096));

export const sandboxSummary = (s: SandboxInfo) => ({
  sandboxId: s.id,
  template: s.templateName,
  state: s.state,
  startedAt: s.startedAt.toISOString(),
  endAt: s.endAt.toISOString(),
  metadata: s.metadata,
});

/** sandbox_create, sandbox_list, sandbox_kill, sandbox_set_timeout and expose_port. */
export function registerSandboxTools(server: McpServer, deps: McpDeps, session: McpSession): void {
  const { manager, sandboxLog, log } = deps;

  server.registerTool(
    'sandbox_create',
    {
      title: 'Create a sandbox',
      description:
        'Starts a new sandbox (an isolated Linux machine) from a template and returns its id. It is ' +
        'killed when its timeout expires (sandbox_set_timeout moves that). The sandbox is tagged with ' +
        `this MCP session (metadata \`${SESSION_KEY}\`).`,
      inputSchema: {
        template: z.string().min(1).max(128).optional().describe('Template name (default: base)'),
        timeoutSeconds: z
          .number()
          .int()
          .positive()
          .optional()
          .describe('Seconds until the sandbox is killed (default: 300)'),
        metadata: stringMap.optional().describe('Your own key-value labels, listed by sandbox_list'),
        envs: stringMap.optional().describe('Environment variables for every command in the sandbox'),
      },
    },
    guarded(log, 'sandbox_create', async (args) => {
      const timeoutSeconds = args.timeoutSeconds ?? 300;
      const sessionId = session.id();
      const info = await manager.create({
        template: args.template ?? 'base',
        timeoutMs: timeoutSeconds * 1000,
        metadata: { ...args.metadata, ...(sessionId !== undefined && { [SESSION_KEY]: sessionId }) },
        envVars: args.envs ?? {},
        owner: session.keyId,
      });
      sandboxLog.append(info.id, 'info', 'sandbox created', {
        template: info.templateName,
        timeout: `${timeoutSeconds}s`,
        via: 'mcp',
        apiKey: session.keyId,
      });
      return json(sandboxSummary(info));
    }),
  );

  server.registerTool(
    'sandbox_list',
    {
      title: 'List sandboxes',
      description:
        'Lists the running sandboxes with their template, end time and metadata; optionally only those ' +
        'created in this MCP session, or those whose metadata has all the given pairs.',
      inputSchema: {
        thisSession: z.boolean().optional().describe('Only sandboxes created in this MCP session'),
        metadata: stringMap.optional().describe('Only sandboxes whose metadata has these pairs'),
      },
    },
    guarded(log, 'sandbox_list', (args) => {
      const want: Record<string, string> = { ...args.metadata };
      const sessionId = session.id();
      if (args.thisSession && sessionId !== undefined) want[SESSION_KEY] = sessionId;
      const sandboxes = manager
        .list()
        .filter((s) => Object.entries(want).every(([k, v]) => s.metadata[k] === v))
        .map(sandboxSummary);
      return Promise.resolve(json({ sandboxes }));
    }),
  );

  server.registerTool(
    'sandbox_kill',
    {
      title: 'Kill a sandbox',
      description: 'Stops a sandbox and deletes everything in it.',
      inputSchema: { sandboxId },
    },
    guarded(log, 'sandbox_kill', async (args) => {
      manager.get(args.sandboxId); // a sandbox already stopping is not found, as for the API
      sandboxLog.append(args.sandboxId, 'info', 'kill requested', { via: 'mcp', apiKey: session.keyId });
      await manager.kill(args.sandboxId);
      return json({ sandboxId: args.sandboxId, killed: true });
    }),
  );

  server.registerTool(
    'sandbox_set_timeout',
    {
      title: "Set a sandbox's timeout",
      description: 'The sandbox will be killed this many seconds from now (earlier or later than before).',
      inputSchema: {
        sandboxId,
        timeoutSeconds: z.number().int().positive().describe('Seconds from now'),
      },
    },
    guarded(log, 'sandbox_set_timeout', (args) => {
      const info = manager.setTimeout(args.sandboxId, args.timeoutSeconds * 1000);
      sandboxLog.append(info.id, 'info', 'timeout set', {
        endAt: info.endAt.toISOString(),
        via: 'mcp',
        apiKey: session.keyId,
      });
      return Promise.resolve(json(sandboxSummary(info)));
    }),
  );

  server.registerTool(
    'expose_port',
    {
      title: 'Expose a port',
      description:
        'The URL at which a server listening on this port inside the sandbox is reached ' +
        '(`http://<port>-<sandboxId>.<domain>`; WebSockets upgrade at the same URL), and the ' +
        "equivalent request to Cove's own address with the E2b-Sandbox-Id and E2b-Sandbox-Port headers, " +
        'for clients that cannot resolve that host name. The server must listen on 0.0.0.0 or the ' +
        "sandbox's address, not only 127.0.0.1.",
      inputSchema: {
        sandboxId,
        port: z.number().int().min(1).max(65_535).describe('The port inside the sandbox'),
      },
    },
    guarded(log, 'expose_port', (args) => {
      const { id } = manager.get(args.sandboxId);
      return Promise.resolve(
        json({
          url: `${deps.scheme}://${args.port}-${id}.${deps.domain}`,
          viaHeaders: {
            url: deps.url,
            headers: { 'E2b-Sandbox-Id': id, 'E2b-Sandbox-Port': String(args.port) },
          },
        }),
      );
    }),
  );
}
