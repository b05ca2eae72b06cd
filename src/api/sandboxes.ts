import { Hono } from 'hono';
import { z } from 'zod';
import type { Manager, SandboxInfo } from '../manager/manager.ts';
import { body, envMap, sandboxId, stringMap } from './validate.ts';

/** The version of envd whose protocol Cove serves; the SDK requires a semver >= 0.1.0. */
export const ENVD_VERSION = '0.2.0';

const createSchema = z.looseObject({
  templateID: z.string().min(1).max(128).default('base'),
  timeout: z.number().int().optional(),
  metadata: stringMap.optional(),
  envVars: envMap.optional(),
});

const timeoutSchema = z.object({ timeout: z.number().int() });

function detail(s: SandboxInfo) {
  return {
    sandboxID: s.id,
    templateID: s.templateName,
    alias: s.templateName,
    clientID: 'cove',
    metadata: s.metadata,
    startedAt: s.startedAt.toISOString(),
    endAt: s.endAt.toISOString(),
    state: s.state === 'paused' ? 'paused' : 'running',
    cpuCount: s.limits.cpus,
    memoryMB: s.limits.memoryMiB,
    diskSizeMB: 0,
    envdVersion: ENVD_VERSION,
  };
}

/** E2B's sandbox resource: create, get, list, kill, timeout (spec sections 2.3 to 2.8). */
export function sandboxRoutes(manager: Manager): Hono {
  const app = new Hono();

  // v1 (SDK <= 2.50) defaults the timeout to 15 s when omitted, v2 to 300 s (spec 2.3).
  for (const [path, defaultTimeout] of [
    ['/sandboxes', 15],
    ['/v2/sandboxes', 300],
  ] as const) {
    app.post(path, async (c) => {
      const req = await body(c, createSchema);
      const info = await manager.create({
        template: req.templateID,
        timeoutMs: (req.timeout ?? defaultTimeout) * 1000,
        metadata: req.metadata ?? {},
        envVars: req.envVars ?? {},
      });
      return c.json(
        { sandboxID: info.id, templateID: info.templateName, clientID: 'cove', envdVersion: ENVD_VERSION },
        201,
      );
    });
  }

  const list = (c: { json: (v: unknown) => Response }) => c.json(manager.list().map(detail));
  app.get('/sandboxes', list);
  app.get('/v2/sandboxes', list);

  app.get('/sandboxes/:id', (c) => c.json(detail(manager.get(sandboxId(c)))));

  app.delete('/sandboxes/:id', async (c) => {
    await manager.kill(sandboxId(c));
    return c.body(null, 204);
  });

  app.post('/sandboxes/:id/timeout', async (c) => {
    const id = sandboxId(c);
    const { timeout } = await body(c, timeoutSchema);
    manager.setTimeout(id, timeout * 1000);
    return c.body(null, 204);
  });

  return app;
}
