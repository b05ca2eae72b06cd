import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import type { CallToolResult, ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import { CoveError } from '../core/errors.ts';
import type { Logger } from '../core/log.ts';

export type ToolExtra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** A tool's answer: the value as JSON text (what every client shows) and as structured content. */
export function json(value: Record<string, unknown>): CallToolResult {
  return { content: [{ type: 'text', text: JSON.stringify(value, null, 2) }], structuredContent: value };
}

/**
 * A tool handler whose failures become MCP tool errors (`isError: true`) with the reason, so
 * that the model can read them and the session goes on. A CoveError's message is meant for
 * callers and is shown with its code; anything else is logged once and shown as "internal
 * error", revealing nothing (STYLE.md §4, as the HTTP error hook does).
 */
export function guarded<A>(
  log: Logger,
  name: string,
  fn: (args: A, extra: ToolExtra) => Promise<CallToolResult>,
): (args: A, extra: ToolExtra) => Promise<CallToolResult> {
  return async (args, extra) => {
    try {
      return await fn(args, extra);
    } catch (err) {
      if (err instanceof CoveError)
        return { content: [{ type: 'text', text: `${err.code}: ${err.message}` }], isError: true };
      log.error({ err, tool: name }, 'MCP tool failed');
      return { content: [{ type: 'text', text: 'internal error' }], isError: true };
    }
  };
}
