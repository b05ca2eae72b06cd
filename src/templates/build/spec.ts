import { createHash } from 'node:crypto';
import { z } from 'zod';
import { CoveError } from '../../core/errors.ts';
import { validateTag, validateTemplateName } from '../recipe.ts';

/** A failure at a step: the SDK's BuildError names it (`reason.step`: `base`, `1`..`n`, `finalize`). */
export class StepError extends CoveError {
  readonly step: string;
  constructor(step: string, message: string, cause?: unknown) {
    super('invalid_argument', message, { cause });
    this.step = step;
  }
}

/** The fromImage of `cove template import`: an uploaded archive by its hash (no image reference has a `+`). */
export const ARCHIVE_PREFIX = 'cove+archive:';

/** Bump when the builder makes something else of the same steps: every layer key changes. */
export const LAYER_VERSION = 1;

/**
 * `name` or `name:tag` (E2B's names, spec 2.15); the tag of a bare name is `default`. Names are
 * case-insensitive, as E2B's are (its tests build `makeDir`): Cove keeps them in lower case.
 */
export function parseTemplateRef(ref: string): { name: string; tag: string } {
  const [name = '', tag = 'default', ...rest] = ref.toLowerCase().split(':');
  if (rest.length > 0)
    throw new CoveError('invalid_argument', `invalid template name ${JSON.stringify(ref)}`);
  validateTemplateName(name);
  validateTag(tag);
  return { name, tag };
}

/** One step of `TemplateBuildStartV2.steps` (the SDK's instructions). */
export const stepSchema = z.looseObject({
  type: z.enum(['RUN', 'COPY', 'ENV', 'WORKDIR', 'USER']),
  args: z.array(z.string().max(65_536)).max(512).default([]),
  filesHash: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  force: z.boolean().optional(),
});
export type Step = z.infer<typeof stepSchema>;

/** `TemplateBuildStartV2` (POST /v2/templates/{id}/builds/{buildID}). */
export const buildStartSchema = z.looseObject({
  fromImage: z.string().min(1).max(512).optional(),
  fromTemplate: z.string().min(1).max(140).optional(),
  fromImageRegistry: z.looseObject({}).nullish(),
  force: z.boolean().optional(),
  startCmd: z.string().max(65_536).optional(),
  readyCmd: z.string().max(65_536).optional(),
  steps: z.array(stepSchema).max(256).default([]),
});
export type BuildStart = z.infer<typeof buildStartSchema>;

/** `TemplateBuildRequestV3` (POST /v3/templates). */
export const buildRequestSchema = z.looseObject({
  name: z.string().min(1).max(140).optional(),
  alias: z.string().min(1).max(140).optional(),
  tags: z.array(z.string()).max(32).nullish(),
  cpuCount: z.int().min(1).max(64).optional(),
  memoryMB: z.int().min(128).max(262_144).optional(),
});

/** Checks a step's arguments before anything runs, so that a malformed one fails the trigger. */
export function checkStep(step: Step, index: number): void {
  const bad = (why: string) => new StepError(String(index + 1), `step ${index + 1} (${step.type}): ${why}`);
  const { args } = step;
  switch (step.type) {
    case 'RUN':
      if (args.length < 1 || args[0] === '') throw bad('needs a command');
      break;
    case 'COPY':
      if (args.length < 2) throw bad('needs a source and a destination');
      if (!step.filesHash) throw bad('needs the hash of its files (filesHash)');
      break;
    case 'ENV':
      if (args.length === 0 || args.length % 2 !== 0) throw bad('needs key and value pairs');
      for (let i = 0; i < args.length; i += 2)
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(args[i] ?? '')) throw bad(`${args[i]} is no variable name`);
      break;
    case 'WORKDIR':
      if (args.length < 1 || args[0] === '') throw bad('needs a path');
      break;
    case 'USER':
      if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(args[0] ?? '') && !/^\d+$/.test(args[0] ?? ''))
        throw bad(`${args[0]} is no user name`);
      break;
  }
}

/**
 * A layer's cache key: its parent's key and everything the step reads (force is no input),
 * with `runner`, the version of what runs the step (steps.ts STEP_RUNNER).
 */
export function layerKey(parent: string, step: Step, runner: string): string {
  const h = createHash('sha256');
  h.update(JSON.stringify([LAYER_VERSION, runner, parent, step.type, step.args, step.filesHash ?? null]));
  return h.digest('hex').slice(0, 32);
}

/** The key of a chain's first layer: where it starts from. */
export function baseKey(kind: 'template' | 'debian' | 'image', id: string): string {
  return createHash('sha256')
    .update(JSON.stringify([LAYER_VERSION, kind, id]))
    .digest('hex')
    .slice(0, 32);
}

/**
 * Expands `$VAR` and `${VAR}` from the environment so far, as E2B evaluates ENV values in the
 * build's shell (`setEnvs({PATH: '/app/bin:$PATH'})`). Command substitution is not run.
 */
export function expandEnv(value: string, env: Record<string, string>): string {
  return value.replace(
    /\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g,
    (_m, a?: string, b?: string) => {
      return env[(a ?? b)!] ?? '';
    },
  );
}
