import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import {
  isInitializeRequest,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';

/**
 * `cove mcp`: MCP over stdio for clients that spawn their servers (Claude Desktop, Cursor),
 * relayed message for message to the running Cove's `/mcp`. Only one Cove may serve an
 * instance (its lock), so this process holds no sandboxes: it is a transport adapter, and the
 * tools, sessions, progress and cancellation are the server's (README.md says why). Nothing but
 * protocol messages may reach stdout.
 */
export async function runStdioBridge(opts: { url: string; apiKey: string | undefined }): Promise<void> {
  const upstream = new StreamableHTTPClientTransport(new URL('/mcp', opts.url), {
    requestInit: { headers: opts.apiKey ? { 'x-api-key': opts.apiKey } : {} },
  });
  const local = new StdioServerTransport();
  const initializing = new Set<RequestId>();
  let closing = false;

  const report = (message: string) => process.stderr.write(`cove mcp: ${message}\n`);

  // A request the server never got must still be answered, or the client waits forever.
  const fail = (id: RequestId, err: unknown) => {
    const reason = err instanceof Error ? err.message : String(err);
    const hint = /\b401\b/.test(reason)
      ? ' (set COVE_API_KEY or E2B_API_KEY to a key of this Cove)'
      : /fetch failed|ECONNREFUSED/.test(reason)
        ? ` (is \`cove serve\` running at ${opts.url}? set COVE_URL)`
        : '';
    void local.send({ jsonrpc: '2.0', id, error: { code: -32603, message: `Cove: ${reason}${hint}` } });
  };

  local.onmessage = (message: JSONRPCMessage) => {
    if (isInitializeRequest(message) && isJSONRPCRequest(message)) initializing.add(message.id);
    upstream.send(message).catch((err: unknown) => {
      if (isJSONRPCRequest(message)) fail(message.id, err);
      else report(err instanceof Error ? err.message : String(err));
    });
  };
  upstream.onmessage = (message: JSONRPCMessage) => {
    // The SDK's Client does this after initialize; here the client is at the other end.
    if (isJSONRPCResultResponse(message) && initializing.delete(message.id)) {
      const version = (message.result as { protocolVersion?: unknown }).protocolVersion;
      if (typeof version === 'string') upstream.setProtocolVersion(version);
    }
    void local.send(message);
  };
  upstream.onerror = (err) => report(err.message);
  local.onerror = (err) => report(err.message);

  const shutdown = async () => {
    if (closing) return;
    closing = true;
    // Ends the server's session: with COVE_MCP_CLEANUP=kill that kills its sandboxes.
    await upstream.terminateSession().catch(() => undefined);
    await upstream.close();
    await local.close();
  };
  process.stdin.once('end', () => void shutdown());
  process.stdin.once('close', () => void shutdown());
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void shutdown());

  await upstream.start();
  await local.start();
  await new Promise<void>((resolve) => (local.onclose = resolve));
}
