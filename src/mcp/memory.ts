import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { Memory } from '../services/memory/store.ts';
import type { McpDeps, McpSession } from './deps.ts';
import { guarded, json } from './result.ts';

const namespace = z
  .string()
  .regex(/^[\w.-]{1,64}$/)
  .describe('Memory namespace (1-64 letters, digits or _.-), e.g. the agent or project name');

/**
 * memory_store, memory_recall and memory_forget: Cove's memory service (docs/runtime-services.md)
 * for the session's API key, the same entries sandboxes of that key reach over HTTP.
 */
export function registerMemoryTools(
  server: McpServer,
  deps: McpDeps & { memory: Memory },
  session: McpSession,
) {
  const { memory, log } = deps;
  const scope = (ns: string) => ({ keyId: session.keyId, namespace: ns });

  server.registerTool(
    'memory_store',
    {
      title: 'Remember something',
      description:
        'Stores a long-term fact (kind "fact", forgotten when unused for long) or short-term context ' +
        '(kind "short", expires after ttlSeconds, default 1 hour). Returns the entry with its id.',
      inputSchema: {
        namespace,
        text: z.string().min(1).max(65536),
        kind: z.enum(['fact', 'short']).optional(),
        ttlSeconds: z.number().int().positive().optional(),
        metadata: z.record(z.string(), z.string()).optional(),
      },
    },
    guarded(log, 'memory_store', async (args) => {
      const { namespace: ns, ...entry } = args;
      const [stored] = await memory.add(scope(ns), [entry]);
      return json({ ...stored });
    }),
  );

  server.registerTool(
    'memory_recall',
    {
      title: 'Recall memories',
      description:
        'Finds the stored entries and document chunks best matching a question, in other words too ' +
        '(full-text ranking with stemming, plus vector similarity when configured). Chunks carry a citation.',
      inputSchema: {
        namespace,
        query: z.string().min(1).max(4096),
        limit: z.number().int().min(1).max(50).optional(),
      },
    },
    guarded(log, 'memory_recall', async (args) =>
      json({
        results: await memory.recall(scope(args.namespace), { query: args.query, limit: args.limit ?? 5 }),
      }),
    ),
  );

  server.registerTool(
    'memory_forget',
    {
      title: 'Forget',
      description: 'Forgets one entry by id, or with all=true every entry and document of the namespace.',
      inputSchema: { namespace, id: z.number().int().positive().optional(), all: z.boolean().optional() },
    },
    guarded(log, 'memory_forget', (args) => {
      if ((args.id === undefined) === (args.all !== true))
        throw new CoveError('invalid_argument', 'give an id, or all: true to forget the whole namespace');
      if (args.id !== undefined) {
        memory.remove(scope(args.namespace), args.id);
        return Promise.resolve(json({ forgotten: 1 }));
      }
      return Promise.resolve(json({ forgotten: memory.clear(scope(args.namespace)) }));
    }),
  );
}
