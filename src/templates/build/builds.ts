import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, readFile, readdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoveError } from '../../core/errors.ts';
import type { TemplateStore } from '../store.ts';
import type { Catalog } from './catalog.ts';
import type { FileStore } from './files.ts';
import type { RegistryOptions } from './image.ts';
import { collectLayers } from './gc.ts';
import { checkBuild, runBuild, StepError, type LogLevel } from './run-build.ts';
import type { BuildSandbox, OpenBuildSandbox } from './sandbox.ts';
import { parseTemplateRef, type BuildStart } from './spec.ts';

export type BuildStatus = 'waiting' | 'building' | 'ready' | 'error';

export interface LogEntry {
  timestamp: string;
  level: LogLevel;
  message: string;
  step?: string;
}

/** A build, as kept in `<dir>/<buildID>.json` (its log beside it, `<buildID>.log`, one JSON entry a line). */
export interface BuildRecord {
  buildID: string;
  name: string;
  tags: string[];
  status: BuildStatus;
  createdAt: string;
  updatedAt: string;
  finishedAt?: string;
  cpuCount: number;
  memoryMB: number;
  reason?: { message: string; step?: string };
  /** Set once triggered. */
  triggered?: boolean;
}

export interface BuildsOptions {
  /** Where build records and logs live (per Cove instance). */
  dir: string;
  layersDir: string;
  templates: TemplateStore;
  catalog: Catalog;
  files: FileStore;
  open: OpenBuildSandbox;
  /** Builds that run at once, and how many more may wait (beyond: resource_exhausted). */
  concurrency: number;
  queue: number;
  /** How long a layer no template uses is kept for reuse (gc.ts). */
  layerTtlMs: number;
  registry: RegistryOptions;
  log: (msg: string, err?: unknown) => void;
}

const MAX_LOG_ENTRIES = 20_000;

/**
 * Template builds (spec 2.15): requested, triggered, queued, run, published. A build's record
 * is written before it is acknowledged; a build that was waiting or running when Cove stopped
 * is marked failed at the next start (`recover`), never left building. Nothing of a failed
 * build becomes usable: its layers are complete or absent (run-build.ts), and only a finished
 * build is published.
 */
export function createBuilds(opts: BuildsOptions) {
  const records = new Map<string, BuildRecord>();
  const logs = new Map<string, LogEntry[]>();
  const waiting: Array<{ id: string; spec: BuildStart }> = [];
  let running = 0;
  /** Layer keys in use by running builds: GC keeps them. */
  const busy = new Set<string>();
  let closed = false;
  /** Build sandboxes open now: close() removes them, which fails their step at once. */
  const sandboxes = new Set<BuildSandbox>();
  const executions = new Set<Promise<void>>();
  const open: OpenBuildSandbox = async (t) => {
    if (closed) throw new CoveError('unavailable', 'Cove is stopping');
    const s = await opts.open(t);
    sandboxes.add(s);
    const remove = s.remove.bind(s);
    return {
      ...s,
      remove: async () => {
        sandboxes.delete(s);
        await remove();
      },
    };
  };

  const recordPath = (id: string) => join(opts.dir, `${id}.json`);
  const save = async (r: BuildRecord) => {
    r.updatedAt = new Date().toISOString();
    const tmp = `${recordPath(r.buildID)}.tmp`;
    await writeFile(tmp, JSON.stringify(r));
    await rename(tmp, recordPath(r.buildID));
  };

  const append = (id: string, level: LogLevel, message: string, step?: string) => {
    const entries = logs.get(id) ?? [];
    logs.set(id, entries);
    if (entries.length >= MAX_LOG_ENTRIES) return;
    const entry: LogEntry = { timestamp: new Date().toISOString(), level, message, ...(step && { step }) };
    entries.push(entry);
    void appendFile(join(opts.dir, `${id}.log`), `${JSON.stringify(entry)}\n`).catch(() => {});
  };

  const find = async (id: string): Promise<BuildRecord> => {
    const r = records.get(id);
    if (r) return r;
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new CoveError('not_found', `build ${id} not found`);
    try {
      const loaded = JSON.parse(await readFile(recordPath(id), 'utf8')) as BuildRecord;
      records.set(id, loaded);
      return loaded;
    } catch {
      throw new CoveError('not_found', `build ${id} not found`);
    }
  };

  const readLog = async (id: string): Promise<LogEntry[]> => {
    const inMemory = logs.get(id);
    if (inMemory) return inMemory;
    const text = await readFile(join(opts.dir, `${id}.log`), 'utf8').catch(() => '');
    const entries = text
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as LogEntry);
    logs.set(id, entries);
    return entries;
  };

  const gc = async () => {
    const keep = new Set(busy);
    for (const t of await opts.catalog.list())
      for (const info of t.tags.values()) info.layers.forEach((k) => keep.add(k));
    for (const name of await opts.catalog.names()) await opts.catalog.prune(name);
    await collectLayers(opts.layersDir, keep, opts.layerTtlMs);
    await opts.files.collect(opts.layerTtlMs);
  };

  const execute = async (id: string, spec: BuildStart) => {
    const r = await find(id);
    r.status = 'building';
    await save(r);
    const started = Date.now();
    const mine = new Set<string>();
    try {
      const result = await runBuild(
        {
          templates: opts.templates,
          layersDir: opts.layersDir,
          open,
          archive: (hash) => opts.files.archive(hash),
          registry: opts.registry,
        },
        {
          name: r.name,
          spec,
          limits: { cpus: r.cpuCount, memoryMiB: r.memoryMB, pids: 1024 },
          log: (level, message, step) => append(id, level, message, step),
        },
      );
      result.chain.forEach((k) => (busy.add(k), mine.add(k)));
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      append(id, 'info', `publishing ${r.name} with tags ${r.tags.join(', ')}`, 'finalize');
      await opts.catalog.publish({ name: r.name, tags: r.tags, buildID: id, result, buildSeconds: seconds });
      r.status = 'ready';
      append(id, 'info', `Build finished in ${seconds}s`, 'finalize');
    } catch (err) {
      const message = closed
        ? 'Cove stopped while this build was running: build it again'
        : err instanceof CoveError
          ? err.message
          : `internal error: ${String(err)}`;
      if (!(err instanceof CoveError) && !closed) opts.log(`template build ${id} failed`, err);
      const step = err instanceof StepError ? err.step : undefined;
      append(id, 'error', message, step);
      r.status = 'error';
      r.reason = { message, ...(step && { step }) };
    } finally {
      for (const k of mine) busy.delete(k);
    }
    r.finishedAt = new Date().toISOString();
    await save(r);
    await gc().catch((err: unknown) => opts.log('template layer GC failed', err));
  };

  const pump = () => {
    while (!closed && running < opts.concurrency && waiting.length > 0) {
      const next = waiting.shift()!;
      running++;
      const p = execute(next.id, next.spec).finally(() => {
        running--;
        executions.delete(p);
        pump();
      });
      executions.add(p);
    }
  };

  return {
    /** Marks builds a previous run left waiting or running as failed; removes half-made layers. */
    async recover(): Promise<void> {
      await mkdir(opts.dir, { recursive: true, mode: 0o700 });
      for (const file of await readdir(opts.dir)) {
        if (!file.endsWith('.json')) continue;
        const r = JSON.parse(await readFile(join(opts.dir, file), 'utf8')) as BuildRecord;
        if (r.status === 'building' || (r.status === 'waiting' && r.triggered)) {
          r.status = 'error';
          r.reason = { message: 'Cove stopped while this build was running: build it again' };
          r.finishedAt = new Date().toISOString();
          append(r.buildID, 'error', r.reason.message);
          await save(r);
        }
      }
      await gc();
    },

    /** POST /v3/templates: a new build of `name[:tag]`, waiting for its trigger. */
    async request(input: { name: string; tags?: string[]; cpuCount?: number; memoryMB?: number }) {
      const { name, tag } = parseTemplateRef(input.name);
      if (opts.catalog.isRecipe(name))
        throw new CoveError(
          'conflict',
          `template ${name} is built from templates/${name}: pick another name`,
        );
      const tags = [
        ...new Set([tag, ...(input.tags ?? []).map((t) => parseTemplateRef(`${name}:${t}`).tag)]),
      ];
      const now = new Date().toISOString();
      const r: BuildRecord = {
        buildID: randomUUID(),
        name,
        tags,
        status: 'waiting',
        createdAt: now,
        updatedAt: now,
        cpuCount: input.cpuCount ?? 2,
        memoryMB: input.memoryMB ?? 1024,
      };
      await mkdir(opts.dir, { recursive: true, mode: 0o700 });
      await save(r);
      records.set(r.buildID, r);
      return r;
    },

    /** POST /v2/templates/{id}/builds/{buildID}: checks the input at once, then queues the build. */
    async trigger(templateID: string, buildID: string, spec: BuildStart): Promise<void> {
      const r = await find(buildID);
      if (r.name !== templateID)
        throw new CoveError('not_found', `build ${buildID} is not a build of ${templateID}`);
      if (r.triggered) throw new CoveError('conflict', `build ${buildID} was already started`);
      if (waiting.length >= opts.queue)
        throw new CoveError('resource_exhausted', `${waiting.length} template builds are waiting already`);
      // A bad base or step fails the build itself, at once: the SDK then raises BuildError with
      // the stack trace of the builder call that made that step (reason.step).
      const refused = await checkBuild(
        {
          templates: opts.templates,
          layersDir: opts.layersDir,
          open: opts.open,
          archive: (hash) => opts.files.archive(hash),
          registry: opts.registry,
        },
        spec,
      ).then(
        () => undefined,
        (err: unknown) => {
          if (err instanceof StepError) return err;
          throw err;
        },
      );
      if (refused) {
        append(buildID, 'error', refused.message, refused.step);
        Object.assign(r, { status: 'error', triggered: true, finishedAt: new Date().toISOString() });
        r.reason = { message: refused.message, step: refused.step };
        await save(r);
        return;
      }
      r.triggered = true;
      await save(r);
      append(
        buildID,
        'info',
        running >= opts.concurrency ? `queued behind ${running + waiting.length} builds` : 'starting',
      );
      waiting.push({ id: buildID, spec });
      pump();
    },

    /** The build's status and its log from `offset`, at most `limit` entries (spec 2.15, step 4). */
    async status(templateID: string, buildID: string, offset: number, limit: number) {
      const r = await find(buildID);
      if (r.name !== templateID)
        throw new CoveError('not_found', `build ${buildID} is not a build of ${templateID}`);
      const entries = (await readLog(buildID)).slice(offset, offset + limit);
      return { record: r, entries };
    },

    /** The newest `limit` builds this Cove has a record of (the console's builds list), newest first. */
    async list(limit: number): Promise<BuildRecord[]> {
      const ids = (await readdir(opts.dir).catch(() => [] as string[]))
        .filter((f) => /^[0-9a-f-]{36}\.json$/.test(f))
        .map((f) => f.slice(0, -'.json'.length));
      const all = await Promise.all(ids.map((id) => find(id).catch(() => undefined)));
      return all
        .filter((r) => r !== undefined)
        .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
        .slice(0, limit);
    },

    gc,

    /**
     * Stops building: queued builds stay recorded as waiting (the next start marks them
     * failed), running ones lose their sandbox, fail, and are recorded before this resolves.
     */
    async close(): Promise<void> {
      closed = true;
      await Promise.allSettled([...sandboxes].map((s) => s.remove()));
      await Promise.allSettled([...executions]);
    },
  };
}

export type Builds = ReturnType<typeof createBuilds>;
