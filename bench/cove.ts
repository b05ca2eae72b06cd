import { chmod, mkdtemp, readdir, rm, rmdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../src/config/config.ts';
import { createLogger, type Logger } from '../src/core/log.ts';
import { startCove } from '../src/main.ts';
import type { Manager } from '../src/manager/manager.ts';
import { mountsUnder, sh } from './sh.ts';
import { since } from './stats.ts';
import type { Subject } from './subject.ts';
import { BENCH_INSTANCE } from './instance.ts';

/** The bench's own Cove instance: its bridge, namespaces, cgroups and crun root are `coveb*` (BENCH_INSTANCE). */
const DEFAULT_INSTANCE = BENCH_INSTANCE;

/** Runs `argv` (`true` by default) in a sandbox through the manager and resolves at its exit. */
export function execTrue(manager: Manager, id: string, argv: string[] = ['true']): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    manager
      .exec(
        id,
        { argv },
        {
          onData() {},
          onExit(r) {
            if (r.exitCode === 0) resolve();
            else reject(new Error(`${argv.join(' ')} exited ${r.exitCode} in ${id}`));
          },
        },
      )
      .catch(reject);
  });
}

/** Reads an NDJSON exec stream until its exit event; rejects on an error event or a non-zero exit. */
async function readExit(res: Response): Promise<void> {
  if (!res.ok || !res.body) throw new Error(`exec: HTTP ${res.status} ${await res.text()}`);
  const decoder = new TextDecoder();
  let buffered = '';
  for await (const chunk of res.body) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true });
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      const event = JSON.parse(line) as { type: string; exitCode?: number; message?: string };
      if (event.type === 'error') throw new Error(`exec: ${event.message}`);
      if (event.type === 'exit') {
        if (event.exitCode !== 0) throw new Error(`exec: true exited ${event.exitCode}`);
        await res.body.cancel().catch(() => undefined);
        return;
      }
    }
  }
  throw new Error('exec: stream ended without an exit event');
}

export interface CoveBench {
  /** In-process manager API, then the same Cove over HTTP. */
  subjects: Subject[];
  /** Kills every sandbox left, stops Cove and removes its bridge, table, cgroups and home. */
  close(): Promise<string[]>;
  /** Cove's home (a temporary directory) and the template it uses, for the report. */
  home: string;
  /** Where the HTTP server listens, and the API key it minted: for the e2b SDK and curl. */
  url: string;
  apiKey: string;
  manager: Manager;
  /** The pool settings this Cove runs with (min and max 0: pools off). */
  pool: { min: number; max: number; budget: number };
  /** Claims of the warm pool since start: a hit took a ready sandbox, a miss built one. */
  claims(): { hits: number; misses: number };
  /**
   * What of the bench's instance is on the host beyond the sandboxes the manager lists and
   * the pool holds: network namespaces, veths, crun containers, mounts under the home.
   */
  leaks(): Promise<string[]>;
}

export async function coveBench(opts: {
  templatesHome: string;
  subnet16: string;
  /** Keep Cove's warm pool (its defaults, COVE_POOL_*); off: every create is cold. */
  pool: boolean;
  /** Another instance name (two Coves at once: bench/runsc.ts); BENCH_INSTANCE by default. */
  instance?: string;
  /** The runtime backend of its sandboxes (crun by default). */
  runtime?: 'crun' | 'runsc' | 'microvm';
  /** The audit trail on (the default) or off: bench/audit.ts compares the two. */
  audit?: boolean;
  /** Cove's logger (default: COVE_LOG_LEVEL, warn, to stderr): bench/pause.ts reads its lines. */
  log?: Logger;
}): Promise<CoveBench> {
  const INSTANCE = opts.instance ?? DEFAULT_INSTANCE;
  const home = await mkdtemp(join(tmpdir(), 'coveb-home-'));
  // mkdtemp makes it 0700: a sandbox's mapped root could not reach its rootfs below it.
  await chmod(home, 0o711);
  const logLevel = process.env.COVE_LOG_LEVEL ?? 'warn';
  const loaded = loadConfig({
    home,
    templatesHome: opts.templatesHome,
    instance: INSTANCE,
    subnet16: opts.subnet16,
    port: 0,
    logLevel,
    ...(opts.runtime && { runtime: opts.runtime }),
  });
  // The targets are about the cold path: without --pool, no sandbox is built ahead (min and
  // max 0 disable pools), and no background filler competes with the peers for the CPU.
  const pooled = opts.pool ? loaded : { ...loaded, pool: { ...loaded.pool, min: 0, max: 0 } };
  const config = { ...pooled, audit: { ...pooled.audit, enabled: opts.audit ?? pooled.audit.enabled } };
  const cove = await startCove(config, { log: opts.log ?? createLogger(logLevel) });
  const { manager } = cove;
  // Bench-only instrumentation: the manager claims through `pool.take`, looked up on the
  // object at each call, so wrapping it here counts hits and misses without touching src/.
  const counts = { hits: 0, misses: 0 };
  const take = manager.pool.take.bind(manager.pool);
  manager.pool.take = (template, hash) => {
    const got = take(template, hash);
    if (got) counts.hits++;
    else counts.misses++;
    return got;
  };
  // A fresh home: startCove minted the first API key and hands it back.
  const auth = { 'x-api-key': cove.apiKey ?? '' };

  async function killAll(): Promise<void> {
    for (const s of manager.list()) await manager.kill(s.id).catch(() => undefined);
  }

  let longInProcess: string | undefined;
  let longHttp: string | undefined;

  const inProcess: Subject = {
    runtime: 'cove',
    notes: [
      'in-process: manager.create({template:"base"}) then manager.exec(["true"]) to its exit; kill = manager.kill; login-shell round trip = manager.exec(["/bin/bash","-l","-c","true"])',
      'user namespace (own uid range), idmapped overlay on the template, netns + veth on a bridge, seccomp, v1 cgroups, agent as PID 1',
    ],
    async create() {
      const start = performance.now();
      const info = await manager.create({ template: 'base', timeoutMs: 60_000 });
      try {
        const created = since(start);
        const execStart = performance.now();
        await execTrue(manager, info.id);
        const first = since(execStart);
        const total = since(start);
        const killStart = performance.now();
        await manager.kill(info.id);
        return { total, create: created, first, kill: since(killStart) };
      } finally {
        await manager.kill(info.id).catch(() => undefined);
      }
    },
    async startLong() {
      longInProcess = (await manager.create({ template: 'base', timeoutMs: 3600_000 })).id;
    },
    async roundTrip() {
      if (!longInProcess) throw new Error('cove: no long-lived sandbox');
      const start = performance.now();
      await execTrue(manager, longInProcess);
      return since(start);
    },
    async shellRoundTrip() {
      if (!longInProcess) throw new Error('cove: no long-lived sandbox');
      const start = performance.now();
      await execTrue(manager, longInProcess, ['/bin/bash', '-l', '-c', 'true']);
      return since(start);
    },
    async cleanup() {
      await killAll();
      return [];
    },
  };

  const post = (path: string, body: object) =>
    fetch(cove.url + path, {
      method: 'POST',
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  async function httpCreate(timeout: number): Promise<string> {
    const res = await post('/v2/sandboxes', { templateID: 'base', timeout });
    if (res.status !== 201) throw new Error(`POST /v2/sandboxes: HTTP ${res.status} ${await res.text()}`);
    return ((await res.json()) as { sandboxID: string }).sandboxID;
  }
  async function httpExec(id: string): Promise<void> {
    await readExit(await post(`/cove/v1/sandboxes/${id}/exec`, { argv: ['true'] }));
  }
  async function httpKill(id: string): Promise<void> {
    const res = await fetch(`${cove.url}/sandboxes/${id}`, { method: 'DELETE', headers: auth });
    await res.arrayBuffer();
    if (res.status !== 204 && res.status !== 200)
      throw new Error(`DELETE /sandboxes/${id}: HTTP ${res.status}`);
  }

  const http: Subject = {
    runtime: 'cove-http',
    notes: [
      'HTTP on 127.0.0.1 (fetch, keep-alive): POST /v2/sandboxes, POST /cove/v1/sandboxes/:id/exec (NDJSON to the exit line), DELETE /sandboxes/:id',
    ],
    async create() {
      const start = performance.now();
      const id = await httpCreate(60);
      try {
        const created = since(start);
        const execStart = performance.now();
        await httpExec(id);
        const first = since(execStart);
        const total = since(start);
        const killStart = performance.now();
        await httpKill(id);
        return { total, create: created, first, kill: since(killStart) };
      } finally {
        await manager.kill(id).catch(() => undefined);
      }
    },
    async startLong() {
      longHttp = await httpCreate(3600);
    },
    async roundTrip() {
      if (!longHttp) throw new Error('cove-http: no long-lived sandbox');
      const start = performance.now();
      await httpExec(longHttp);
      return since(start);
    },
    async cleanup() {
      await killAll();
      return [];
    },
  };

  // The API's kill answers before its teardown ends (manager.ts): give those a few seconds.
  async function leaks(): Promise<string[]> {
    for (let i = 0; i < 50; i++) {
      const left = await leaksNow();
      if (left.length === 0) return left;
      await new Promise((r) => setTimeout(r, 200));
    }
    return leaksNow();
  }

  async function leaksNow(): Promise<string[]> {
    const left: string[] = [];
    const known = new Set(manager.list().map((s) => s.id));
    const pooled = Object.values(manager.pool.stats()).reduce((n, p) => n + p.ready, 0);
    // What Cove keeps between restarts (bridge, firewall table, cgroup parents, crun root)
    // is not a leak; one namespace, veth and crun container per sandbox beyond those listed
    // and pooled is.
    const netns = (await sh('ip', ['netns', 'list'])).stdout
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((l) => l.startsWith(`${INSTANCE}-`));
    if (netns.length > known.size + pooled)
      left.push(`${netns.length} network namespaces (${netns.slice(0, 3).join(', ')}…)`);
    const veths = (
      JSON.parse((await sh('ip', ['-j', 'link', 'show', 'type', 'veth'])).stdout || '[]') as Array<{
        ifname: string;
      }>
    ).filter((l) => l.ifname.startsWith(`${INSTANCE}-`));
    if (veths.length > known.size + pooled)
      left.push(
        `${veths.length} veths (${veths
          .slice(0, 3)
          .map((v) => v.ifname)
          .join(', ')}…)`,
      );
    const containers = (await sh('crun', ['--root', config.crunRoot, 'list', '-q'])).stdout
      .split('\n')
      .filter(Boolean);
    if (containers.length > known.size + pooled)
      left.push(
        `${containers.length} crun containers in ${config.crunRoot} (${containers.slice(0, 3).join(' ')}…)`,
      );
    const mounts = await mountsUnder(home);
    // Each sandbox holds a few mounts (rootfs overlay and its idmapped view): count none when
    // none is alive, else leave the count to the other checks.
    if (known.size + pooled === 0 && mounts.length)
      left.push(`${mounts.length} mounts (${mounts.slice(0, 3).join(', ')}…)`);
    return left;
  }

  return {
    subjects: [inProcess, http],
    home,
    url: cove.url,
    apiKey: cove.apiKey ?? '',
    manager,
    pool: { min: config.pool.min, max: config.pool.max, budget: config.pool.budget },
    claims: () => ({ ...counts }),
    leaks,
    async close() {
      await killAll();
      await cove.close();
      const left = await leaks();
      if (left.length === 0) {
        await sh('ip', ['link', 'del', `${INSTANCE}0`]);
        await sh('nft', ['delete', 'table', 'inet', INSTANCE]);
        await rm(config.crunRoot, { recursive: true, force: true });
        await rm(config.runscRoot, { recursive: true, force: true });
        await rm(config.microvm.stateRoot, { recursive: true, force: true });
        await rmdir(join(config.crunRoot, '..')).catch(() => undefined);
        for (const hierarchy of await readdir('/sys/fs/cgroup').catch(() => [])) {
          await rmdir(join('/sys/fs/cgroup', hierarchy, INSTANCE)).catch(() => undefined);
        }
        await rm(home, { recursive: true, force: true });
      }
      return left;
    },
  };
}
