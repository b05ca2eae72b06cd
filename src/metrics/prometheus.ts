import { statfs } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { cpuBusy, memAvailable, readHost, type HostHealth } from './host.ts';

/** What the gauges read at each scrape; main.ts wires them to the manager and its pool. */
export interface PrometheusSources {
  /** `runtime` is the backend that runs it (crun, runsc): the `backend` label. */
  sandboxes: () => Array<{ state: string; templateName: string; runtime: string }>;
  pools: () => Record<string, { ready: number; target: number }>;
  /** Where sandboxes live: its filesystem's room is the disk headroom. */
  home: string;
  /** The microvm backend's accelerator, for `GET /cove/v1/host`. */
  microvm?: () => NonNullable<HostHealth['microvm']>;
}

/** Latency buckets, seconds: from a pool hit (~1 ms) to a cold create on a loaded host. */
const LATENCY = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export type Prometheus = ReturnType<typeof createPrometheus>;

/**
 * Cove's metrics in Prometheus' text format (`GET /metrics`), on prom-client (the library
 * Node services expose Prometheus with; counters, histograms and gauges with collect
 * callbacks, and the process's own metrics). One registry per Cove, not the global one: a
 * test process may run several. Counters are moved by the code that sees the event (observe*
 * below); gauges are read from the sources at each scrape.
 */
export function createPrometheus(sources: PrometheusSources) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'cove_process_' });
  const registers = [registry];

  new Gauge({
    name: 'cove_sandboxes',
    help: 'Sandboxes served, by state, template and backend',
    labelNames: ['state', 'template', 'backend'],
    registers,
    collect() {
      this.reset();
      for (const s of sources.sandboxes())
        this.inc({ state: s.state, template: s.templateName, backend: s.runtime });
    },
  });
  const creates = new Counter({
    name: 'cove_sandbox_creates_total',
    help: 'Sandboxes created, by template, source (pool: a warm pool hit, cold: built) and backend',
    labelNames: ['template', 'source', 'backend'],
    registers,
  });
  const createSeconds = new Histogram({
    name: 'cove_sandbox_create_seconds',
    help: 'Create latency in the manager, pool hits and cold builds apart',
    labelNames: ['template', 'source'],
    buckets: LATENCY,
    registers,
  });
  const kills = new Counter({
    name: 'cove_sandbox_kills_total',
    help: 'Sandboxes stopped, by reason (requested, timeout, died)',
    labelNames: ['reason'],
    registers,
  });
  const commands = new Counter({
    name: 'cove_commands_total',
    help: 'Processes that ended, by outcome (ok: exit 0, failed: any other exit)',
    labelNames: ['outcome'],
    registers,
  });
  const commandSeconds = new Histogram({
    name: 'cove_command_seconds',
    help: 'Process lifetime, spawn to exit',
    buckets: LATENCY,
    registers,
  });
  const agentCalls = new Counter({
    name: 'cove_agent_calls_total',
    help: 'Calls to sandbox agents by operation (spawn, read, write, rename, remove, mkdir, stat, list, ...) and outcome',
    labelNames: ['op', 'outcome'],
    registers,
  });
  const agentSeconds = new Histogram({
    name: 'cove_agent_call_seconds',
    help: 'Latency of agent calls by operation (a read: first request to last chunk)',
    labelNames: ['op'],
    buckets: LATENCY,
    registers,
  });
  const errors = new Counter({
    name: 'cove_errors_total',
    help: 'Errors by code (the CoveError codes of docs/errors.md) and where they surfaced (api, agent)',
    labelNames: ['code', 'source'],
    registers,
  });
  const requests = new Counter({
    name: 'cove_http_requests_total',
    help: 'Control API requests by route, method and status',
    labelNames: ['route', 'method', 'status'],
    registers,
  });
  new Gauge({
    name: 'cove_pool_ready',
    help: 'Warm sandboxes ready to be claimed, by template',
    labelNames: ['template'],
    registers,
    collect() {
      this.reset();
      for (const [template, p] of Object.entries(sources.pools())) this.set({ template }, p.ready);
    },
  });
  new Gauge({
    name: 'cove_pool_target',
    help: 'Warm sandboxes wanted, by template',
    labelNames: ['template'],
    registers,
    collect() {
      this.reset();
      for (const [template, p] of Object.entries(sources.pools())) this.set({ template }, p.target);
    },
  });

  const busy = cpuBusy();
  new Gauge({
    name: 'cove_host_cpu_busy_ratio',
    help: 'Share of all host CPUs busy since the previous scrape (0..1)',
    registers,
    collect() {
      this.set(busy());
    },
  });
  new Gauge({
    name: 'cove_host_cpus',
    help: 'Host CPUs',
    registers,
    collect() {
      this.set(cpus().length);
    },
  });
  new Gauge({
    name: 'cove_host_load1',
    help: 'Host load average over one minute',
    registers,
    collect() {
      this.set(loadavg()[0]!);
    },
  });
  new Gauge({
    name: 'cove_host_memory_bytes',
    help: 'Host memory',
    registers,
    collect() {
      this.set(totalmem());
    },
  });
  new Gauge({
    name: 'cove_host_memory_available_bytes',
    help: 'Host memory available without swapping (MemAvailable)',
    registers,
    collect() {
      this.set(memAvailable());
    },
  });
  const disk = async () => {
    const st = await statfs(sources.home);
    return { total: st.blocks * st.bsize, available: st.bavail * st.bsize };
  };
  new Gauge({
    name: 'cove_host_disk_bytes',
    help: 'Size of the filesystem holding COVE_HOME (sandboxes, templates)',
    registers,
    async collect() {
      this.set((await disk()).total);
    },
  });
  new Gauge({
    name: 'cove_host_disk_available_bytes',
    help: 'Room left on the filesystem holding COVE_HOME',
    registers,
    async collect() {
      this.set((await disk()).available);
    },
  });

  // Its own window: the console's reads must not shorten the one Prometheus scrapes over.
  const hostBusy = cpuBusy();

  return {
    registry,

    /** The host's headroom now, for the console's health page (`GET /cove/v1/host`). */
    host: () => readHost(sources, hostBusy),

    /** The text a scrape returns, and its content type. */
    async scrape(): Promise<{ text: string; contentType: string }> {
      return { text: await registry.metrics(), contentType: registry.contentType };
    },

    observeCreate(c: { template: string; pooled: boolean; ms: number; backend: string }): void {
      const source = c.pooled ? 'pool' : 'cold';
      creates.inc({ template: c.template, source, backend: c.backend });
      createSeconds.observe({ template: c.template, source }, c.ms / 1000);
    },

    observeKill(reason: string): void {
      kills.inc({ reason });
    },

    /** An agent call settled (src/audit/agent.ts); `command` is a process's whole life. */
    observeAgent(op: string, seconds: number, outcome: string): void {
      if (op === 'command') {
        commands.inc({ outcome });
        commandSeconds.observe(seconds);
        return;
      }
      agentCalls.inc({ op, outcome });
      agentSeconds.observe({ op }, seconds);
      if (outcome !== 'ok') errors.inc({ code: outcome, source: 'agent' });
    },

    observeRequest(r: { route: string; method: string; status: number; code?: string }): void {
      requests.inc({ route: r.route, method: r.method, status: String(r.status) });
      if (r.code !== undefined) errors.inc({ code: r.code, source: 'api' });
    },
  };
}
