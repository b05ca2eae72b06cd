import { Hono } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { Manager } from '../manager/manager.ts';
import type { ApiEnv } from './auth.ts';

/** A comment line this often keeps idle proxies and load balancers from closing the stream. */
const PING_MS = 15_000;

/**
 * `GET /cove/v1/sandbox-events`: Server-Sent Events as sandboxes are created (`created`), paused
 * (`paused`) and stopped (`killed`), each `{sandboxID}`, so the console's list changes when the
 * sandboxes do instead of at its next poll. Read with fetch and the key in `X-API-Key` (an
 * EventSource cannot send a header, and the key never goes into a URL). Other changes (a
 * resume, a new end time) have no event: the list's periodic refresh shows them.
 */
export function eventRoutes(manager: Pick<Manager, 'events'>): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.get('/cove/v1/sandbox-events', (c) =>
    streamSSE(c, async (stream) => {
      const send = (event: string, sandboxID: string) =>
        void stream.writeSSE({ event, data: JSON.stringify({ sandboxID }) }).catch(() => undefined);
      const created = (e: { id: string }) => send('created', e.id);
      const paused = (id: string) => send('paused', id);
      const killed = (id: string) => send('killed', id);
      manager.events.on('created', created);
      manager.events.on('paused', paused);
      manager.events.on('killed', killed);
      let ping: ReturnType<typeof setInterval> | undefined;
      try {
        await stream.writeSSE({ event: 'ready', data: '{}' });
        // Until the client goes: its listeners are removed at once, not at the next ping.
        await new Promise<void>((resolve) => {
          stream.onAbort(resolve);
          ping = setInterval(() => void stream.write(': ping\n\n').catch(resolve), PING_MS);
        });
      } finally {
        clearInterval(ping);
        manager.events.off('created', created);
        manager.events.off('paused', paused);
        manager.events.off('killed', killed);
      }
    }),
  );
  return app;
}
