// Template builds through the E2B API (README.md): the one thing main.ts wires.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TemplateStore } from '../store.ts';
import { createBuilds } from './builds.ts';
import { createCatalog } from './catalog.ts';
import { createFileStore } from './files.ts';
import type { RegistryOptions } from './image.ts';
import type { OpenBuildSandbox } from './sandbox.ts';

export type { BuildRecord, BuildStatus, LogEntry } from './builds.ts';
export type { BuildInfo, BuiltTemplate } from './catalog.ts';
export type { BuildSandbox, OpenBuildSandbox } from './sandbox.ts';
export { buildRequestSchema, buildStartSchema, parseTemplateRef } from './spec.ts';

export interface TemplateBuilderOptions {
  /** The instance's state root: build records and uploads go to `home/template-builds`. */
  home: string;
  /** The template cache root (templates in `templatesHome/templates`, layers in its `.layers`). */
  templatesHome: string;
  recipesDir: string;
  templates: TemplateStore;
  open: OpenBuildSandbox;
  concurrency?: number;
  queue?: number;
  uploadMaxBytes?: number;
  uploadUrlTtlMs?: number;
  layerTtlMs?: number;
  /** fromImage pulls: a Docker Hub mirror, and registries spoken to over plain HTTP. */
  registry?: RegistryOptions;
  log: (msg: string, err?: unknown) => void;
}

export function createTemplateBuilder(opts: TemplateBuilderOptions) {
  const cacheDir = join(opts.templatesHome, 'templates');
  const layersDir = join(cacheDir, '.layers');
  const catalog = createCatalog({ cacheDir, recipesDir: opts.recipesDir });
  const files = createFileStore({
    dir: join(opts.home, 'template-builds', 'files'),
    ttlMs: opts.uploadUrlTtlMs ?? 15 * 60_000,
    maxBytes: opts.uploadMaxBytes ?? 1 << 30,
  });
  const builds = createBuilds({
    dir: join(opts.home, 'template-builds'),
    layersDir,
    templates: opts.templates,
    catalog,
    files,
    open: opts.open,
    concurrency: opts.concurrency ?? 2,
    queue: opts.queue ?? 32,
    layerTtlMs: opts.layerTtlMs ?? 24 * 3600_000,
    registry: opts.registry ?? { insecure: [] },
    log: opts.log,
  });
  return {
    templates: opts.templates,
    catalog,
    files,
    builds,
    /** Bytes on disk under a template build's folder (shared hard links counted in full). */
    async diskBytes(name: string, hash: string): Promise<number> {
      const { stdout } = await promisify(execFile)('du', [
        '-s',
        '-B1',
        '--one-file-system',
        join(cacheDir, name, hash),
      ]);
      return Number(stdout.split('\t')[0]) || 0;
    },
  };
}

export type TemplateBuilder = ReturnType<typeof createTemplateBuilder>;
