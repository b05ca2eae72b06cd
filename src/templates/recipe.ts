import { createHash } from 'node:crypto';
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';

/**
 * A template recipe is data: `templates/<name>/template.json` plus, optionally, mmdebstrap hook
 * scripts in `templates/<name>/hooks/` (files named `customize*`, `essential*`, ..., executable).
 * The recipe's hash (every file of its folder, the builder's version and its generic
 * finalize script) names the build in the cache, so a changed recipe is a new build.
 */

/** Bump when the builder changes what it makes from the same recipe (finalize-rootfs.sh is hashed anyway). */
export const BUILDER_VERSION = 1;

/** Hex digits of sha256 kept in cache paths: 64 bits, short enough for overlay mount options. */
export const HASH_LENGTH = 16;

const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

export function validateTemplateName(name: string): void {
  if (typeof name !== 'string' || !NAME_RE.test(name)) {
    throw new CoveError(
      'invalid_argument',
      `invalid template name ${JSON.stringify(name)}: want ${NAME_RE.source}`,
    );
  }
}

const TAG_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;

/** A template tag (`name:tag`); `default` is the tag of a bare name. */
export function validateTag(tag: string): void {
  if (!TAG_RE.test(tag)) {
    throw new CoveError(
      'invalid_argument',
      `invalid template tag ${JSON.stringify(tag)}: want ${TAG_RE.source}`,
    );
  }
}

const absPath = z.string().regex(/^\/[A-Za-z0-9._/+-]*$/, 'an absolute path of plain characters');

const recipeSchema = z.strictObject({
  name: z.string().regex(NAME_RE),
  description: z.string().max(200).default(''),
  suite: z.string().regex(/^[a-z][a-z0-9-]*$/),
  variant: z.enum(['minbase', 'apt']),
  sources: z
    .array(z.string().regex(/^deb (\[[^\]\n]*\] )?https?:\/\/[^\s]+ [a-z0-9/-]+( [a-z0-9-]+)+$/))
    .min(1),
  packages: z.array(z.string().regex(/^[a-z0-9][a-z0-9+.-]+$/)),
  dpkgOptions: z.array(z.string().regex(/^path-(exclude|include)=\/[^\s]*$/)).default([]),
  user: z.strictObject({
    name: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/),
    uid: z.int().min(1).max(65533),
    gid: z.int().min(1).max(65533),
    home: absPath,
    shell: absPath,
    sudo: z.boolean(),
  }),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()),
  limits: z.strictObject({
    cpus: z.number().positive().max(256),
    memoryMiB: z.int().min(32),
    pids: z.int().min(16),
  }),
  /** The runtime backend of its sandboxes (docs/runtimes.md); the server's default when absent. */
  runtime: z.enum(['crun', 'runsc']).optional(),
  start: z
    .strictObject({
      /** Run by `/bin/sh -c` as `user` in its home, with the sandbox's env. */
      command: z.string().min(1).max(4096),
      /** A user of the sandbox; the template's user when absent. */
      user: z
        .string()
        .regex(/^[a-z_][a-z0-9_-]{0,31}$/)
        .optional(),
      /** Where its stdout and stderr go, inside the sandbox (appended). */
      log: absPath.default('/tmp/cove-start.log'),
      /** create returns once this TCP port accepts connections on the sandbox's address. */
      readyPort: z.int().min(1).max(65535).optional(),
      readyTimeoutMs: z.int().min(100).max(600_000).default(60_000),
    })
    .optional(),
});

export type Recipe = z.infer<typeof recipeSchema>;

/** Parses a template.json; the name inside must match its folder. */
export function parseRecipe(name: string, text: string): Recipe {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CoveError('invalid_argument', `template ${name}: template.json is not JSON`, { cause: err });
  }
  const parsed = recipeSchema.safeParse(raw);
  if (!parsed.success) {
    throw new CoveError('invalid_argument', `template ${name}: ${z.prettifyError(parsed.error)}`);
  }
  if (parsed.data.name !== name) {
    throw new CoveError('invalid_argument', `template ${name}: template.json names ${parsed.data.name}`);
  }
  return parsed.data;
}

/** Reads and validates `recipesDir/<name>/template.json`; not_found when there is no such recipe. */
export async function loadRecipe(recipesDir: string, name: string): Promise<Recipe> {
  validateTemplateName(name);
  let text: string;
  try {
    text = await readFile(join(recipesDir, name, 'template.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new CoveError('not_found', `template ${name} has no recipe`, { cause: err });
    }
    throw err;
  }
  return parseRecipe(name, text);
}

/** Relative paths of every entry under dir, sorted by code unit so the order never depends on the fs. */
async function listTree(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(join(dir, prefix), { withFileTypes: true })) {
    // Python writes these beside a recipe's sources whenever something imports them on the
    // host: they are not recipe content and must not trigger a rebuild.
    if (entry.name === '__pycache__') continue;
    const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
    out.push(rel);
    if (entry.isDirectory()) out.push(...(await listTree(dir, rel)));
  }
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * The build key of a recipe folder: sha256 over the builder version, the extra inputs given
 * (the generic finalize script) and every entry of the folder (path, kind, executable bit,
 * content or link target), truncated to HASH_LENGTH hex digits. Timestamps and owners are not
 * part of it, so a fresh clone hashes like the old checkout.
 */
export async function hashRecipeDir(dir: string, extraInputs: readonly string[] = []): Promise<string> {
  const h = createHash('sha256');
  h.update(`cove-template-builder ${BUILDER_VERSION}\0`);
  for (const input of extraInputs) {
    h.update(`extra\0${input.length}\0`);
    h.update(input);
  }
  for (const rel of await listTree(dir)) {
    const path = join(dir, rel);
    const st = await lstat(path);
    if (st.isDirectory()) {
      h.update(`dir\0${rel}\0`);
    } else if (st.isSymbolicLink()) {
      h.update(`link\0${rel}\0${await readlink(path)}\0`);
    } else if (st.isFile()) {
      const content = await readFile(path);
      h.update(`file\0${rel}\0${st.mode & 0o111 ? 'x' : '-'}\0${content.length}\0`);
      h.update(content);
    } else {
      throw new CoveError('invalid_argument', `recipe file ${path} is neither a file, a folder nor a link`);
    }
  }
  return h.digest('hex').slice(0, HASH_LENGTH);
}
