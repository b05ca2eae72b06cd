import { Hono } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { ApiDeps } from './app.ts';
import type { ApiEnv } from './auth.ts';
import { createNetwork } from './network.ts';
import { parseIam } from '../identity/iam.ts';
import { createVolumeMounts, inheritedVolumeMounts } from './volume-mounts.ts';
import { body, envMap, sandboxId, stringMap } from './validate.ts';
import { sandboxDetail, sandboxReply } from './wire.ts';

/** `NewSandbox` (v1) and `NewSandboxV2`: one schema, unknown fields tolerated (spec 2.3). */
const createSchema = z.looseObject({
  templateID: z.string().min(1).max(128).default('base'),
  timeout: z.number().int().optional(),
  metadata: stringMap.nullish(),
  envVars: envMap.nullish(),
  secure: z.boolean().optional(),
  allow_internet_access: z.boolean().optional(),
  network: z.looseObject({}).nullish(),
  autoPause: z.boolean().optional(),
  autoPauseMemory: z.boolean().optional(),
  autoResume: z.looseObject({ enabled: z.boolean() }).nullish(),
  mcp: z.looseObject({}).nullish(),
  volumeMounts: z
    .array(z.looseObject({ name: z.string().max(256), path: z.string().max(4096) }))
    .max(64)
    .nullish(),
  iam: z.unknown().optional(), // parseIam (src/identity/iam.ts)
});

/**
 * Options Cove cannot honour yet are refused, never dropped: a caller who asks for no
 * internet would otherwise get a sandbox that silently does
 * something else (network settings are checked by createNetwork, volumes by volumeMounts).
 * Options whose default is what Cove does anyway are accepted, and so is `mcp`: the SDK
 * itself starts the MCP gateway inside the sandbox after the create (spec 2.17), and when the
 * template has no gateway it kills the sandbox and says so, as it does against E2B. Cove checks
 * its server names first and copies github/ servers in (src/mcp/in-sandbox.ts).
 */
function unsupportedCreateOption(req: z.infer<typeof createSchema>): string | undefined {
  // Upstream's own checks (spec 2.3): a filesystem-only pause cannot be woken by traffic.
  if (req.autoPauseMemory === false && !req.autoPause) return 'autoPauseMemory=false needs autoPause';
  if (req.autoPauseMemory === false && req.autoResume?.enabled)
    return 'autoPauseMemory=false cannot be combined with autoResume';
  return undefined;
}

const connectSchema = z.looseObject({
  timeout: z.number().int().optional(),
  memory: z.boolean().optional(),
});

/** Seconds the connect call keeps a sandbox alive when the body names none (v2's default; v1 always sends one). */
const CONNECT_DEFAULT_TIMEOUT = 300;

/** E2B's sandbox resource: create, connect, get, kill (spec 2.3, 2.4, 2.5, 2.7). */
export function sandboxRoutes(deps: ApiDeps): Hono<ApiEnv> {
  const { manager, sandboxLog } = deps;
  const app = new Hono<ApiEnv>();

  // v1 (SDK <= 2.50) defaults the timeout to 15 s when omitted, v2 to 300 s. v1 clients ask
  // for `secure` (2.50 sends true unless told otherwise); v2 sandboxes are always secure.
  for (const [path, defaultTimeout, secureByDefault] of [
    ['/sandboxes', 15, false],
    ['/v2/sandboxes', 300, true],
  ] as const) {
    app.post(path, async (c) => {
      const req = await body(c, createSchema);
      const unsupported = unsupportedCreateOption(req);
      if (unsupported) throw new CoveError('invalid_argument', unsupported);
      if (req.mcp) deps.inSandboxMcp?.check(req.mcp);
      const iam = parseIam(req.iam);
      if (iam && !deps.identity)
        throw new CoveError('invalid_argument', 'iam: this server has no workload identity issuer');
      const timeout = req.timeout ?? defaultTimeout;
      const secure = req.secure ?? secureByDefault;
      const network = createNetwork(
        req.network,
        req.allow_internet_access,
        secure,
        {
          keyId: c.get('keyId'),
          secrets: deps.secrets,
        },
        iam,
      );
      // None named: a snapshot's own are mounted again (docs/secrets-and-volumes.md).
      const snapshot = req.volumeMounts == null ? manager.getSnapshot(req.templateID) : undefined;
      const volumeMounts = snapshot
        ? inheritedVolumeMounts(
            deps.volumes?.store,
            c.get('keyId'),
            snapshot.volumeMounts,
            `snapshot ${snapshot.id}`,
          )
        : createVolumeMounts(deps.volumes?.store, c.get('keyId'), req.volumeMounts);
      const info = await manager.create({
        template: req.templateID,
        timeoutMs: timeout * 1000,
        secure,
        metadata: req.metadata ?? {},
        envVars: req.envVars ?? {},
        owner: c.get('keyId'),
        ...(network && { network }),
        ...(volumeMounts && { volumeMounts }),
        ...((req.autoPause || req.autoResume?.enabled) && {
          lifecycle: {
            onTimeout: req.autoPause ? 'pause' : 'kill',
            keepMemory: req.autoPauseMemory ?? true,
            autoResume: req.autoResume?.enabled ?? false,
            timeoutMs: timeout * 1000,
          },
        }),
      });
      if (req.mcp && deps.inSandboxMcp)
        await deps.inSandboxMcp.prepare(info.id, req.mcp).catch(async (err: unknown) => {
          await manager.kill(info.id).catch(() => undefined);
          throw err;
        });
      sandboxLog.append(info.id, 'info', 'sandbox created', {
        template: info.templateName,
        timeout: `${timeout}s`,
        secure: String(info.envdAccessToken !== undefined),
        apiKey: c.get('keyId'),
      });
      return c.json(sandboxReply(info, deps.domain), 201);
    });
  }

  // The SDK crashes on a 204 here (spec 1.7): always a body. 200: it was running, its end
  // time only extended; 201: it was paused and is resumed (pause.ts), `memory: false` reboots
  // it from its files. A timeout of 0 extends nothing (and resumes for the default).
  for (const path of ['/sandboxes/:id/connect', '/v2/sandboxes/:id/connect']) {
    app.post(path, async (c) => {
      const id = sandboxId(c);
      const { timeout = CONNECT_DEFAULT_TIMEOUT, memory } = await body(c, connectSchema);
      if (timeout < 0) throw new CoveError('invalid_argument', 'Timeout must be greater than 0');
      const current = manager.get(id);
      const before = current.endAt.getTime();
      const { info, resumed } =
        timeout === 0 && current.state === 'running'
          ? { info: current, resumed: false }
          : await manager.resume(id, {
              timeoutMs: (timeout || CONNECT_DEFAULT_TIMEOUT) * 1000,
              ...(memory === false && { memory }),
            });
      sandboxLog.append(id, 'info', resumed ? 'resumed' : 'connected', {
        endAt: info.endAt.toISOString(),
        extended: String(info.endAt.getTime() !== before),
        apiKey: c.get('keyId'),
      });
      return c.json(sandboxReply(info, deps.domain), resumed ? 201 : 200);
    });
  }

  app.get('/sandboxes/:id', (c) => {
    const info = manager.get(sandboxId(c));
    return c.json(sandboxDetail(info, deps.diskSizeMB(), deps.domain));
  });

  app.delete('/sandboxes/:id', async (c) => {
    const id = sandboxId(c);
    manager.get(id); // a second kill of a dying sandbox is a 404, as for one already gone
    sandboxLog.append(id, 'info', 'kill requested', { apiKey: c.get('keyId') });
    // The reply once it is unreachable; its teardown goes on after (manager.ts, kill).
    await manager.kill(id, 'requested', { background: true });
    return c.body(null, 204);
  });

  return app;
}
