import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { registerCodeTools } from './code.ts';
import { registerCommandTools } from './commands.ts';
import type { McpDeps, McpSession } from './deps.ts';
import { registerDesktopTools } from './desktop.ts';
import { registerFileTools } from './files.ts';
import { registerLifecycleTools } from './lifecycle.ts';
import { registerMemoryTools } from './memory.ts';
import { registerResources } from './resources.ts';
import { registerSandboxTools } from './sandboxes.ts';

/** One MCP server per session (the SDK binds a server to one transport), over the shared manager. */
export function createMcpServer(deps: McpDeps, session: McpSession): McpServer {
  const server = new McpServer(
    { name: 'cove', title: 'Cove sandboxes', version: '0.1.0' },
    {
      instructions:
        'Cove runs isolated Linux sandboxes. Create one with sandbox_create, act in it with run_command ' +
        'and the file tools, run code with run_code (template code-interpreter-v1), drive a desktop with desktop_screenshot and desktop_action (template desktop), reach a server in it with expose_port, and kill it with sandbox_kill when done.',
    },
  );
  registerSandboxTools(server, deps, session);
  registerCommandTools(server, deps, session);
  registerFileTools(server, deps);
  registerCodeTools(server, deps);
  registerDesktopTools(server, deps);
  registerLifecycleTools(server, deps, session);
  registerResources(server, deps);
  if (deps.memory) registerMemoryTools(server, { ...deps, memory: deps.memory }, session);
  return server;
}
