import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError, isCoveError } from '../../core/errors.ts';
import type { Template, TemplateLimits, TemplateStart, TemplateStore } from '../store.ts';
import { ensureDebianLayer } from './debian.ts';
import {
  ensureImageLayer,
  parseImageRef,
  registryCredentials,
  type ImageSource,
  type RegistryOptions,
} from './image.ts';
import { applyUpper, linkTree, readLayer } from './layers.ts';
import type { OpenBuildSandbox } from './sandbox.ts';
import {
  ARCHIVE_PREFIX,
  baseKey,
  checkStep,
  layerKey,
  StepError,
  type BuildStart,
  type Step,
} from './spec.ts';

export { StepError };
import { checkStart } from './start-check.ts';
import { envStep, runFileStep, STEP_RUNNER, type StepContext } from './steps.ts';

/** A layer: the state after a step. `layers/<key>/layer.json`, and `rootfs/` when the step changed files. */
export interface Layer {
  key: string;
  /** Absolute path of the rootfs (its own, its parent's for ENV, or a template's for a base). */
  rootfs: string;
  ctx: StepContext;
}

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type BuildLog = (level: LogLevel, message: string, step?: string) => void;

export interface BuildDeps {
  templates: TemplateStore;
  /** `<templates cache>/.layers` */
  layersDir: string;
  open: OpenBuildSandbox;
  /** The uploaded archive of a COPY's files; throws a CoveError when it is missing or refused. */
  archive: (filesHash: string) => Promise<string>;
  /** Registry mirror and plain-HTTP registries for fromImage pulls. */
  registry: RegistryOptions;
}

export interface BuildResult {
  layer: Layer;
  /** Every layer key of the chain, base first (what GC keeps). */
  chain: string[];
  limits: TemplateLimits;
  start?: TemplateStart;
  /** The base template's runtime backend: its builds and sandboxes use it too. */
  runtime?: string;
}

const READY_TIMEOUT_MS = 120_000;

/**
 * What a fromImage names: Cove's base for `e2bdev/base`, a local Debian for `debian:<suite>`,
 * an archive `cove template import` uploaded, or else an image to pull from its registry.
 */
function resolveImage(image: string): { template: string } | { debian: string } | ImageSource {
  if (image.startsWith(ARCHIVE_PREFIX)) return { kind: 'archive', path: image.slice(ARCHIVE_PREFIX.length) };
  const [repo = '', tag = 'latest'] = image.split(':');
  if (repo === 'e2bdev/base' || repo === 'docker.io/e2bdev/base') return { template: 'base' };
  if ((repo === 'debian' || repo === 'docker.io/library/debian') && /^[a-z][a-z0-9-]*$/.test(tag))
    return { debian: tag === 'latest' ? 'stable' : tag.replace(/-slim$/, '') };
  parseImageRef(image);
  return { kind: 'registry', image };
}

/** Checks a build's input before it is queued: unknown bases and bad steps fail at once. */
export async function checkBuild(deps: BuildDeps, spec: BuildStart): Promise<void> {
  spec.steps.forEach(checkStep);
  if (spec.fromTemplate !== undefined && spec.fromImage !== undefined)
    throw new CoveError('invalid_argument', 'give fromTemplate or fromImage, not both');
  if (spec.fromTemplate !== undefined) await baseTemplate(deps, spec.fromTemplate);
  else {
    const source = resolveImage(spec.fromImage ?? 'e2bdev/base');
    if ('kind' in source && source.kind === 'registry') registryCredentials(spec.fromImageRegistry);
    if ('kind' in source && source.kind === 'archive') await deps.archive(source.path);
  }
}

async function baseTemplate(deps: BuildDeps, ref: string): Promise<Template> {
  try {
    return await deps.templates.get(ref);
  } catch (err) {
    if (isCoveError(err, 'not_found') || isCoveError(err, 'invalid_argument'))
      throw new StepError('base', `unknown base template ${ref}: ${err.message}`, err);
    throw err;
  }
}

function templateLayer(t: Template): Layer {
  return {
    key: baseKey('template', `${t.name}@${t.hash}@${t.rootfs}`),
    rootfs: t.rootfs,
    ctx: { env: t.env, user: t.defaultUser, ...(t.workdir !== undefined && { workdir: t.workdir }) },
  };
}

/**
 * Runs a build: the base, then each step, reusing a cached layer when the step's key (its
 * parent's key, its text and its files' hash) is known, unless the step or the build is forced;
 * once one step runs, every later one runs too. Layers are written to a temporary folder and
 * renamed into place, so a killed build leaves no half-made layer under a key.
 */
export async function runBuild(
  deps: BuildDeps,
  input: { name: string; spec: BuildStart; limits: TemplateLimits; log: BuildLog },
): Promise<BuildResult> {
  const { spec, log } = input;
  const n = spec.steps.length;
  await mkdir(deps.layersDir, { recursive: true, mode: 0o755 });
  let layer: Layer;
  let start: TemplateStart | undefined;
  let runtime: string | undefined;
  let limits = input.limits;
  if (spec.fromTemplate !== undefined) {
    const t = await baseTemplate(deps, spec.fromTemplate);
    log('info', `FROM template ${t.name} (${t.hash})`, 'base');
    layer = templateLayer(t);
    start = t.start;
    runtime = t.runtime;
    limits = { ...limits, pids: t.limits.pids };
  } else {
    const image = spec.fromImage ?? 'e2bdev/base';
    const source = resolveImage(image);
    if ('template' in source) {
      const t = await baseTemplate(deps, source.template);
      log('info', `FROM ${image}: Cove's ${t.name} template (${t.hash}), not pulled from a registry`, 'base');
      layer = templateLayer(t);
      runtime = t.runtime;
      limits = { ...limits, pids: t.limits.pids };
    } else if ('kind' in source) {
      const from: ImageSource =
        source.kind === 'archive'
          ? { kind: 'archive', path: await deps.archive(source.path) }
          : { ...source, registry: spec.fromImageRegistry };
      layer = await ensureImageLayer(deps.layersDir, from, deps.registry, log);
    } else {
      log(
        'info',
        `FROM ${image}: built locally from Debian's archive with mmdebstrap (suite ${source.debian}), as Debian's official images are built with debootstrap; no registry is contacted`,
        'base',
      );
      layer = await ensureDebianLayer(deps.layersDir, source.debian, (line) => log('debug', line, 'base'));
    }
  }
  const chain = [layer.key];
  let broken = spec.force === true;
  for (const [i, step] of spec.steps.entries()) {
    const label = `[${i + 1}/${n}] ${step.type} ${step.args.join(' ')}`.slice(0, 300);
    const stepName = String(i + 1);
    const key = layerKey(layer.key, step, STEP_RUNNER);
    broken ||= step.force === true;
    const cached = broken ? undefined : await readLayer(deps.layersDir, key);
    if (cached) {
      log('info', `CACHED ${label}`, stepName);
      const now = new Date();
      await utimes(join(deps.layersDir, key, 'layer.json'), now, now).catch(() => {}); // GC's clock (gc.ts)
      layer = cached;
      chain.push(key);
      continue;
    }
    broken = true;
    log('info', label, stepName);
    const started = Date.now();
    try {
      layer = await buildLayer(deps, { layer, step, key, limits, runtime, name: input.name, log, stepName });
    } catch (err) {
      if (err instanceof StepError) throw err;
      const message = err instanceof CoveError ? err.message : String(err);
      throw new StepError(stepName, `step ${i + 1} (${step.type}) failed: ${message}`, err);
    }
    log('info', `done ${label.split(' ')[0]} in ${((Date.now() - started) / 1000).toFixed(1)}s`, stepName);
    chain.push(key);
  }
  if (spec.startCmd) {
    start = {
      command: spec.startCmd,
      user: layer.ctx.user.name,
      log: '/tmp/cove-start.log',
      ...(spec.readyCmd && { readyCmd: spec.readyCmd }),
      readyTimeoutMs: READY_TIMEOUT_MS,
    };
  } else if (spec.readyCmd && start) {
    start = { ...start, readyCmd: spec.readyCmd, readyTimeoutMs: READY_TIMEOUT_MS };
  }
  // As E2B: the start command this build sets runs once before the template is published.
  if ((spec.startCmd || spec.readyCmd) && start?.readyCmd !== undefined)
    await checkStart(deps.open, {
      name: input.name,
      layer,
      start: { ...start, readyCmd: start.readyCmd },
      limits,
      runtime,
      log,
    });
  return { layer, chain, limits, ...(start && { start }), ...(runtime && { runtime }) };
}

async function buildLayer(
  deps: BuildDeps,
  b: {
    runtime: string | undefined;
    layer: Layer;
    step: Step;
    key: string;
    limits: TemplateLimits;
    name: string;
    log: BuildLog;
    stepName: string;
  },
): Promise<Layer> {
  const { layer, step, key } = b;
  const dir = join(deps.layersDir, key);
  if (step.type === 'ENV') {
    const next: Layer = { key, rootfs: layer.rootfs, ctx: envStep(step, layer.ctx) };
    await publishLayer(deps.layersDir, key, next, undefined);
    return next;
  }
  const archive = step.type === 'COPY' ? await deps.archive(step.filesHash ?? '') : undefined;
  const sandbox = await deps.open({
    name: b.name,
    hash: key.slice(0, 16),
    rootfs: layer.rootfs,
    limits: b.limits,
    defaultUser: layer.ctx.user,
    env: {},
    ...(b.runtime && { runtime: b.runtime }),
  });
  const tmp = join(deps.layersDir, `.tmp-${key}-${randomBytes(4).toString('hex')}`);
  try {
    const ctx = await runFileStep({
      sandbox,
      step,
      ctx: layer.ctx,
      ...(archive !== undefined && { archive }),
      output: (line) => b.log('info', line, b.stepName),
    });
    await sandbox.stop();
    await mkdir(tmp, { mode: 0o755 });
    await linkTree(layer.rootfs, join(tmp, 'rootfs'));
    await applyUpper({
      upper: sandbox.upper,
      merged: sandbox.rootfs,
      target: join(tmp, 'rootfs'),
      uidBase: sandbox.uidBase,
      log: (line) => b.log('warn', line, b.stepName),
    });
    const next: Layer = { key, rootfs: join(dir, 'rootfs'), ctx };
    await publishLayer(deps.layersDir, key, next, tmp);
    return next;
  } finally {
    await sandbox.remove();
    await rm(tmp, { recursive: true, force: true });
  }
}

/** Puts a layer under its key, replacing one there (a forced step): the old one is moved aside first. */
async function publishLayer(
  layersDir: string,
  key: string,
  layer: Layer,
  staged: string | undefined,
): Promise<void> {
  const tmp = staged ?? join(layersDir, `.tmp-${key}-${randomBytes(4).toString('hex')}`);
  if (!staged) await mkdir(tmp, { recursive: true, mode: 0o755 });
  await writeFile(join(tmp, 'layer.json'), `${JSON.stringify(layer)}\n`);
  const dir = join(layersDir, key);
  const trash = join(layersDir, `.trash-${key}-${randomBytes(4).toString('hex')}`);
  await rename(dir, trash).catch(() => {});
  await rename(tmp, dir);
  await rm(trash, { recursive: true, force: true });
}
