// One configured MCP server: its install step, its process (a stdio MCP client of it), and its
// restarts. A server that exits is started again after 1, 2, 4 ... 30 s (back to 1 s once it
// has run for a minute); meanwhile its tools stay listed and a call says it is restarting.
import { spawn } from 'node:child_process';

const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = await import('@modelcontextprotocol/sdk/client/stdio.js');

const INSTALL_TIMEOUT_MS = 10 * 60_000;
const MAX_BACKOFF_MS = 30_000;
const STABLE_MS = 60_000;

export class Upstream {
  constructor(plan) {
    Object.assign(this, plan);
    this.tools = [];
    this.client = undefined;
    this.restarts = 0;
    this.backoffMs = 1000;
    this.lastExit = undefined;
    this.retryAt = undefined;
  }

  /** installCmd in the repository, once, before the server first starts; a failure stops the gateway. */
  install() {
    if (!this.installCmd) return Promise.resolve();
    console.log(`mcp-gateway: ${this.key}: installing: ${this.installCmd}`);
    return new Promise((resolve, reject) => {
      const child = spawn('/bin/bash', ['-lc', this.installCmd], {
        cwd: this.cwd,
        env: { ...process.env, ...this.env },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: INSTALL_TIMEOUT_MS,
      });
      let out = '';
      const keep = (d) => {
        process.stdout.write(d);
        out = (out + d).slice(-2000);
      };
      child.stdout.on('data', keep);
      child.stderr.on('data', keep);
      child.on('error', reject);
      child.on('exit', (code, signal) =>
        code === 0
          ? resolve()
          : reject(
              new Error(
                `${this.key}: installCmd failed (${signal ?? `exit ${code}`}): ${out.trim().split('\n').slice(-5).join(' | ')}`,
              ),
            ),
      );
    });
  }

  async start() {
    const transport = new StdioClientTransport({
      command: this.command,
      args: this.args,
      cwd: this.cwd,
      env: { ...process.env, ...this.env },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (d) => {
      process.stdout.write(`[${this.key}] ${d}`);
      stderr = (stderr + d).slice(-1000);
    });
    const client = new Client({ name: 'cove-mcp-gateway', version: '1.0.0' });
    const started = Date.now();
    try {
      await client.connect(transport, { timeout: 60_000 });
      const { tools } = await client.listTools();
      this.tools = tools;
    } catch (err) {
      await client.close().catch(() => undefined);
      throw new Error(
        `${this.key} did not start: ${err.message}${stderr ? ` (stderr: ${stderr.trim().slice(-500)})` : ''}`,
      );
    }
    this.client = client;
    this.retryAt = undefined;
    console.log(`mcp-gateway: ${this.key}: up, ${this.tools.length} tools`);
    client.onclose = () => {
      if (this.client !== client) return;
      this.client = undefined;
      this.lastExit = new Date().toISOString();
      if (Date.now() - started > STABLE_MS) this.backoffMs = 1000;
      this.scheduleRestart(stderr);
    };
  }

  scheduleRestart(stderr = '') {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, MAX_BACKOFF_MS);
    this.retryAt = Date.now() + delay;
    console.error(
      `mcp-gateway: ${this.key}: exited${stderr ? ` (${stderr.trim().split('\n').pop()})` : ''}; restarting in ${delay / 1000} s`,
    );
    setTimeout(() => {
      this.restarts++;
      this.start().catch((err) => {
        console.error(`mcp-gateway: ${err.message}`);
        this.scheduleRestart();
      });
    }, delay).unref();
  }

  listed() {
    return this.tools.map((t) => ({
      ...t,
      name: `${this.prefix}__${t.name}`,
      description: `[${this.key}] ${t.description ?? ''}`.trim(),
    }));
  }

  report() {
    return {
      server: this.key,
      up: !!this.client,
      tools: this.tools.length,
      restarts: this.restarts,
      ...(this.lastExit && { lastExit: this.lastExit }),
      ...(this.retryAt && !this.client && { restartInMs: Math.max(0, this.retryAt - Date.now()) }),
    };
  }

  async call(name, args, signal) {
    if (!this.client) {
      const wait = this.retryAt ? ` in ${Math.ceil(Math.max(0, this.retryAt - Date.now()) / 1000)} s` : '';
      return {
        content: [{ type: 'text', text: `MCP server ${this.key} exited and is restarting${wait}` }],
        isError: true,
      };
    }
    try {
      return await this.client.callTool({ name, arguments: args ?? {} }, undefined, {
        signal,
        timeout: 600_000,
      });
    } catch (err) {
      return { content: [{ type: 'text', text: `${this.key}: ${err.message}` }], isError: true };
    }
  }
}
