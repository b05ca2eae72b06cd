import { ResourceTemplate, type McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { CoveError } from '../core/errors.ts';
import type { McpDeps } from './deps.ts';
import { sandboxSummary } from './sandboxes.ts';

/** The newest log lines a logs resource shows. */
const LOG_LINES = 200;

/**
 * `cove://sandboxes`, the running sandboxes, and `cove://sandboxes/{id}/logs`, what happened to
 * one (src/audit: lifecycle and runtime stderr; a stopped sandbox's log stays for a while).
 */
export function registerResources(server: McpServer, deps: McpDeps): void {
  const { manager, sandboxLog } = deps;

  server.registerResource(
    'sandboxes',
    'cove://sandboxes',
    { title: 'Sandboxes', description: 'The running sandboxes, as JSON', mimeType: 'application/json' },
    (uri) => ({
      contents: [
        {
          uri: uri.href,
          mimeType: 'application/json',
          text: JSON.stringify(manager.list().map(sandboxSummary), null, 2),
        },
      ],
    }),
  );

  server.registerResource(
    'sandbox-logs',
    new ResourceTemplate('cove://sandboxes/{sandboxId}/logs', {
      list: () => ({
        resources: manager.list().map((s) => ({
          uri: `cove://sandboxes/${s.id}/logs`,
          name: `logs of ${s.id}`,
          mimeType: 'text/plain',
        })),
      }),
    }),
    {
      title: 'Sandbox log',
      description: `The last ${LOG_LINES} lines of what happened to a sandbox: creation, timeouts, kill, runtime errors`,
      mimeType: 'text/plain',
    },
    (uri, { sandboxId }) => {
      const id = String(sandboxId);
      const entries = sandboxLog.entries(id);
      if (!entries) {
        try {
          manager.get(id);
        } catch {
          throw new CoveError('not_found', `sandbox ${id} not found`);
        }
      }
      const text = (entries ?? [])
        .slice(-LOG_LINES)
        .map((e) => {
          const fields = Object.entries(e.fields).map(([k, v]) => ` ${k}=${v}`);
          return `${new Date(e.timestamp).toISOString()} ${e.level} ${e.message}${fields.join('')}`;
        })
        .join('\n');
      return { contents: [{ uri: uri.href, mimeType: 'text/plain', text }] };
    },
  );
}
