import { Hono } from 'hono';
import { z } from 'zod';
import type { AgentProcess } from '../agent-channel/client.ts';
import type { Manager } from '../manager/manager.ts';
import { body, envMap, sandboxId } from './validate.ts';

const execSchema = z.object({
  argv: z.array(z.string().max(131_072)).min(1).max(4096),
  user: z.string().max(64).optional(),
  cwd: z.string().max(4096).optional(),
  env: envMap.optional(),
});

/**
 * Cove's own streaming exec for the CLI: one JSON object per line, `{"type":"start","pid"}`,
 * then `{"type":"stdout"|"stderr","data":<base64>}`, then `{"type":"exit","exitCode","signal"?}`
 * or `{"type":"error","code","message"}`. Closing the request kills the process. E2B clients
 * use envd's process service instead; this route exists so the CLI needs no SDK.
 */
export function execRoutes(manager: Manager): Hono {
  const app = new Hono();
  app.post('/cove/v1/sandboxes/:id/exec', async (c) => {
    const id = sandboxId(c);
    const req = await body(c, execSchema);
    manager.get(id); // an unknown sandbox is a 404, not an error inside a 200 stream
    const encoder = new TextEncoder();
    let proc: AgentProcess | undefined;
    let done = false;
    const stream = new ReadableStream<Uint8Array>({
      start: async (controller) => {
        const send = (event: object) => {
          if (!done) controller.enqueue(encoder.encode(JSON.stringify(event) + '\n'));
        };
        try {
          proc = await manager.exec(
            id,
            {
              argv: req.argv,
              ...(req.user && { user: req.user }),
              ...(req.cwd && { cwd: req.cwd }),
              env: req.env ?? {},
            },
            {
              onData: (stream, data) =>
                send({ type: stream === 'stderr' ? 'stderr' : 'stdout', data: data.toString('base64') }),
              onExit: (result) => {
                send({ type: 'exit', ...result });
                done = true;
                controller.close();
              },
            },
          );
          send({ type: 'start', pid: proc.pid });
        } catch (err) {
          const e = err as { code?: string; message?: string };
          send({ type: 'error', code: e.code ?? 'internal', message: e.message ?? 'exec failed' });
          done = true;
          controller.close();
        }
      },
      cancel: () => {
        done = true;
        void proc?.signal('SIGKILL').catch(() => undefined);
      },
    });
    return c.body(stream, 200, { 'content-type': 'application/x-ndjson' });
  });
  return app;
}
