import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import {
  buildRequestSchema,
  buildStartSchema,
  parseTemplateRef,
  type BuildInfo,
  type TemplateBuilder,
} from '../templates/build/index.ts';
import type { Template } from '../templates/index.ts';
import type { ApiEnv } from './auth.ts';
import { body } from './validate.ts';
import { ENVD_VERSION } from './wire.ts';

/** Where the SDK PUTs a COPY's archive: Cove's own signed URL, outside the API key check. */
export const UPLOAD_PATH = '/cove/v1/template-files';

/** A template id from the path: Cove's template ids are their names. */
function templateId(c: Context): string {
  const id = c.req.param('id') ?? '';
  try {
    return parseTemplateRef(id).name;
  } catch {
    throw new CoveError('not_found', `template ${id} not found`);
  }
}

const tagsSchema = z.looseObject({
  target: z.string().min(1).max(200),
  tags: z.array(z.string()).min(1).max(32),
});
const untagSchema = z.looseObject({
  name: z.string().min(1).max(200),
  tags: z.array(z.string()).min(1).max(32),
});

/** One element of `GET /templates` (E2B's `Template`). */
function listed(t: {
  name: string;
  buildID: string;
  builtAt: string;
  cpus: number;
  memoryMiB: number;
  tags: string[];
}) {
  return {
    templateID: t.name,
    buildID: t.buildID,
    cpuCount: t.cpus,
    memoryMB: t.memoryMiB,
    diskSizeMB: 0,
    public: false,
    aliases: [t.name],
    names: t.tags.map((tag) => (tag === 'default' ? t.name : `${t.name}:${tag}`)),
    createdAt: t.builtAt,
    updatedAt: t.builtAt,
    createdBy: null,
    lastSpawnedAt: null,
    spawnCount: 0,
    buildCount: 1,
    buildStatus: 'ready',
    envdVersion: ENVD_VERSION,
  };
}

/** A recipe-built template's build time, from its build.json. */
async function builtAt(t: Template): Promise<string> {
  const raw = await readFile(join(dirname(t.rootfs), 'build.json'), 'utf8').catch(() => '{}');
  return (JSON.parse(raw) as { builtAt?: string }).builtAt ?? new Date(0).toISOString();
}

/** Every template with its tags, recipe-built and API-built; what list routes show. */
export async function allTemplates(b: TemplateBuilder) {
  const out: Array<{
    name: string;
    recipe: boolean;
    tags: Map<string, BuildInfo | Template>;
    builtAt: string;
  }> = [];
  for (const t of await b.templates.list())
    if (b.catalog.isRecipe(t.name))
      out.push({ name: t.name, recipe: true, tags: new Map([['default', t]]), builtAt: await builtAt(t) });
  for (const t of await b.catalog.list()) {
    const first = [...t.tags.values()][0];
    out.push({ name: t.name, recipe: false, tags: t.tags, builtAt: first?.builtAt ?? '' });
  }
  return out;
}

/** E2B's template API (spec 2.15): build, status, exists, list, delete, tags. */
export function templateRoutes(b: TemplateBuilder): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();

  app.post('/v3/templates', async (c) => {
    const req = await body(c, buildRequestSchema);
    const name = req.name ?? req.alias;
    if (!name) throw new CoveError('invalid_argument', 'name: a template name is required');
    const r = await b.builds.request({
      name,
      ...(req.tags && { tags: req.tags }),
      ...(req.cpuCount !== undefined && { cpuCount: req.cpuCount }),
      ...(req.memoryMB !== undefined && { memoryMB: req.memoryMB }),
    });
    return c.json(
      {
        templateID: r.name,
        buildID: r.buildID,
        names: r.tags.map((t) => `${r.name}:${t}`),
        tags: r.tags,
        aliases: [r.name],
        public: false,
      },
      202,
    );
  });

  app.get('/templates/:id/files/:hash', async (c) => {
    templateId(c);
    const hash = c.req.param('hash');
    if (await b.files.present(hash)) return c.json({ present: true });
    const origin = new URL(c.req.url).origin;
    return c.json({
      present: false,
      url: `${origin}${UPLOAD_PATH}/${hash}?${await b.files.uploadQuery(hash)}`,
    });
  });

  app.post('/v2/templates/:id/builds/:buildID', async (c) => {
    const spec = await body(c, buildStartSchema);
    await b.builds.trigger(templateId(c), c.req.param('buildID'), spec);
    // openapi-fetch (the SDK) reads a body unless Content-Length says 0.
    c.header('Content-Length', '0');
    return c.body(null, 202);
  });

  app.get('/templates/:id/builds/:buildID/status', async (c) => {
    const offset = Math.max(0, Number(c.req.query('logsOffset') ?? 0) || 0);
    const limit = Math.min(100, Math.max(1, Number(c.req.query('limit') ?? 100) || 100));
    const { record, entries } = await b.builds.status(templateId(c), c.req.param('buildID'), offset, limit);
    return c.json({
      buildID: record.buildID,
      templateID: record.name,
      status: record.status,
      logEntries: entries,
      logs: entries.map((e) => `[${e.timestamp}] ${e.message}\n`),
      ...(record.reason && { reason: { ...record.reason, logEntries: [] } }),
    });
  });

  app.get('/templates/aliases/:id', async (c) => {
    const name = templateId(c);
    // A name exists whatever its tags (E2B's aliases are names); a recipe template by its build.
    if (!(await b.catalog.get(name))) await b.templates.get(name);
    return c.json({ templateID: name, public: false });
  });

  app.get('/templates', async (c) => {
    const out = [];
    for (const t of await allTemplates(b)) {
      const first = [...t.tags.values()][0]!;
      out.push(
        listed({
          name: t.name,
          buildID: 'buildID' in first ? first.buildID : first.hash,
          builtAt: t.builtAt,
          cpus: first.limits.cpus,
          memoryMiB: first.limits.memoryMiB,
          tags: [...t.tags.keys()],
        }),
      );
    }
    return c.json(out);
  });

  app.get('/templates/:id/tags', async (c) => {
    const name = templateId(c);
    const t = await b.catalog.get(name);
    if (!t) {
      const recipe = await b.templates.get(name); // not_found when there is none
      return c.json([{ tag: 'default', buildID: recipe.hash, createdAt: new Date(0).toISOString() }]);
    }
    return c.json(
      [...t.tags].map(([tag, info]) => ({ tag, buildID: info.buildID, createdAt: info.builtAt })),
    );
  });

  app.post('/templates/tags', async (c) => {
    const req = await body(c, tagsSchema);
    const { name, tag } = parseTemplateRef(req.target);
    const tags = req.tags.map((t) => parseTemplateRef(`${name}:${t}`).tag);
    if (b.catalog.isRecipe(name))
      throw new CoveError('permission_denied', `template ${name} is built from a recipe: its tags are fixed`);
    const info = await b.catalog.assignTags(name, tag, tags);
    return c.json({ buildID: info.buildID, tags });
  });

  app.delete('/templates/tags', async (c) => {
    const req = await body(c, untagSchema);
    const { name } = parseTemplateRef(req.name);
    if (b.catalog.isRecipe(name))
      throw new CoveError('permission_denied', `template ${name} is built from a recipe: its tags are fixed`);
    await b.catalog.removeTags(
      name,
      req.tags.map((t) => parseTemplateRef(`${name}:${t}`).tag),
    );
    return c.body(null, 204);
  });

  app.delete('/templates/:id', async (c) => {
    const name = templateId(c);
    if (b.catalog.isRecipe(name))
      throw new CoveError(
        'permission_denied',
        `template ${name} is built from templates/${name}: remove the recipe instead`,
      );
    if (!(await b.catalog.get(name))) throw new CoveError('not_found', `template ${name} not found`);
    await b.catalog.remove(name);
    return c.body(null, 204);
  });

  // Cove's own list for `cove template list`: tags, build and disk use.
  app.get('/cove/v1/templates', async (c) => {
    const out = [];
    for (const t of await allTemplates(b)) {
      for (const [tag, info] of t.tags) {
        out.push({
          name: t.name,
          tag,
          source: t.recipe ? 'recipe' : 'api',
          build: 'buildID' in info ? info.buildID : info.hash,
          builtAt: 'builtAt' in info ? info.builtAt : t.builtAt,
          diskBytes: await b.diskBytes(t.name, info.hash).catch(() => 0),
        });
      }
    }
    return c.json(out);
  });

  return app;
}

/** The upload route (no API key: the URL's signature is the credential). */
export function templateUploadRoutes(b: TemplateBuilder): Hono {
  const app = new Hono();
  app.put(`${UPLOAD_PATH}/:hash`, async (c) => {
    const length = c.req.header('content-length');
    const stream = c.req.raw.body;
    if (!stream) throw new CoveError('invalid_argument', 'the upload has no body');
    await b.files.put(
      c.req.param('hash'),
      { expires: c.req.query('expires') ?? '', signature: c.req.query('signature') ?? '' },
      stream as AsyncIterable<Uint8Array>,
      length === undefined ? undefined : Number(length),
    );
    return c.body(null, 200);
  });
  return app;
}
