import { randomUUID } from 'node:crypto';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { Hono } from 'hono';
import type { ApiEnv } from '../api/auth.ts';
import { SESSION_KEY, type McpDeps } from './deps.ts';
import { createCommandJobs } from './jobs.ts';
import { createMcpServer } from './server.ts';

interface Session {
  transport: WebStandardStreamableHTTPServerTransport;
  keyId: string;
}

/**
 * MCP's Streamable HTTP transport at `/mcp`, one stateful session per client (the
 * `Mcp-Session-Id` header). Mounted behind the API's key check (src/api/auth.ts), so it takes
 * the same keys; a session answers only the key that opened it. A session ends with the
 * client's DELETE, which also kills its sandboxes when `cleanup` is 'kill'; closing the endpoint
 * (Cove stopping) ends every session and keeps every sandbox.
 */
export function createMcpEndpoint(deps: McpDeps) {
  const sessions = new Map<string, Session>();
  const jobs = createCommandJobs();
  deps.manager.events.on('killed', (id) => jobs.forgetSandbox(id));

  async function ended(sessionId: string): Promise<void> {
    sessions.delete(sessionId);
    if (deps.cleanup !== 'kill') return;
    const mine = deps.manager.list().filter((s) => s.metadata[SESSION_KEY] === sessionId);
    await Promise.all(
      mine.map(async (s) => {
        deps.sandboxLog.append(s.id, 'info', 'kill requested', { via: 'mcp session end' });
        await deps.manager.kill(s.id).catch((err: unknown) => {
          deps.log.warn({ err, sandbox: s.id }, 'killing an MCP session’s sandbox failed');
        });
      }),
    );
  }

  const routes = new Hono<ApiEnv>();
  routes.all('/mcp', async (c) => {
    const keyId = c.get('keyId');
    const sessionId = c.req.header('mcp-session-id');
    if (sessionId !== undefined) {
      const session = sessions.get(sessionId);
      // Another key's session is as unknown as an ended one: 404 tells the client to start anew.
      if (!session || session.keyId !== keyId)
        return c.json(
          { jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null },
          404,
        );
      return session.transport.handleRequest(c.req.raw);
    }
    // No session yet: the transport accepts only an initialize request here.
    const transport: WebStandardStreamableHTTPServerTransport = new WebStandardStreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: (id) => void sessions.set(id, { transport, keyId }),
      onsessionclosed: (id) => ended(id),
    });
    const server = createMcpServer(deps, { id: () => transport.sessionId, keyId, jobs });
    await server.connect(transport);
    return transport.handleRequest(c.req.raw);
  });

  return {
    routes,
    /** Ends every session's streams; their sandboxes keep running. */
    async close(): Promise<void> {
      const open = [...sessions.values()];
      sessions.clear();
      await Promise.all(open.map((s) => s.transport.close()));
    },
  };
}
