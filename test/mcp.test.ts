import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove, testConfig } from './helpers.ts';

/**
 * Cove as an MCP server (issue 12 part 1), through the official SDK's client over both
 * transports: Streamable HTTP at /mcp, and `bin/cove mcp` on stdio relaying to it. The server
 * runs with COVE_MCP_CLEANUP=kill, so that ending a session kills its sandboxes (tested).
 */
describe.skipIf(!canRunSandboxes)('Cove as an MCP server', () => {
  let cove: Cove & { config: Config; apiKey: string };

  async function httpClient(key: string | undefined = cove.apiKey) {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', cove.url), {
      requestInit: { headers: key ? { 'x-api-key': key } : {} },
    });
    const client = new Client({ name: 'cove-test', version: '1' });
    await client.connect(transport);
    return { client, transport };
  }

  async function call(client: Client, name: string, args: Record<string, unknown>) {
    return (await client.callTool({ name, arguments: args })) as CallToolResult;
  }
  /** A successful tool call's structured answer. */
  async function ok<T = Record<string, unknown>>(
    client: Client,
    name: string,
    args: Record<string, unknown>,
  ) {
    const result = await call(client, name, args);
    expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
    return result.structuredContent as T;
  }
  const text = (r: CallToolResult) => (r.content[0] as { text: string }).text;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ mcpCleanup: 'kill' }));
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('refuses /mcp without a key or with a wrong one (401)', async () => {
    const init = {
      jsonrpc: '2.0',
      id: 1,
      method: 'initialize',
      params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } },
    };
    for (const headers of [{}, { 'x-api-key': 'e2b_' + '0'.repeat(40) }, { authorization: 'Bearer nope' }]) {
      const res = await fetch(`${cove.url}/mcp`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          ...headers,
        },
        body: JSON.stringify(init),
      });
      expect(res.status).toBe(401);
    }
    await expect(httpClient('e2b_' + '1'.repeat(40))).rejects.toThrow(/401/);
  });

  it('takes the key as a Bearer token too, and lists its tools with schemas', async () => {
    const transport = new StreamableHTTPClientTransport(new URL('/mcp', cove.url), {
      requestInit: { headers: { authorization: `Bearer ${cove.apiKey}` } },
    });
    const client = new Client({ name: 'cove-test', version: '1' });
    await client.connect(transport);
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name).sort();
    expect(names).toEqual(
      [
        'create_code_context',
        'desktop_action',
        'desktop_screenshot',
        'expose_port',
        'kill_command',
        'list_files',
        'memory_forget',
        'memory_recall',
        'memory_store',
        'read_command_output',
        'read_file',
        'remove_file',
        'run_code',
        'run_command',
        'sandbox_create',
        'sandbox_kill',
        'sandbox_list',
        'sandbox_pause',
        'sandbox_resume',
        'sandbox_set_timeout',
        'write_file',
      ].sort(),
    );
    const run = tools.find((t) => t.name === 'run_command')!;
    expect(run.description).toMatch(/bash -l -c/);
    expect(run.inputSchema.required).toEqual(['sandboxId', 'command']);
    await transport.terminateSession();
    await client.close();
  });

  it('creates a sandbox, runs commands, moves files, exposes a port, kills it', async () => {
    const { client, transport } = await httpClient();
    const created = await ok<{ sandboxId: string; metadata: Record<string, string> }>(
      client,
      'sandbox_create',
      {
        timeoutSeconds: 120,
        metadata: { purpose: 'mcp-test' },
        envs: { GREETING: 'hello' },
      },
    );
    const id = created.sandboxId;
    expect(created.metadata).toEqual({ purpose: 'mcp-test', 'mcp-session': transport.sessionId });

    const listed = await ok<{ sandboxes: Array<{ sandboxId: string }> }>(client, 'sandbox_list', {
      thisSession: true,
    });
    expect(listed.sandboxes.map((s) => s.sandboxId)).toEqual([id]);

    // A foreground command: stdout, stderr, exit code, env layering, cwd; output as progress.
    const progress: string[] = [];
    const ran = (await client.callTool(
      {
        name: 'run_command',
        arguments: {
          sandboxId: id,
          command: 'echo $GREETING $X; pwd; echo oops >&2; exit 3',
          envs: { X: 'mcp' },
          cwd: '/tmp',
        },
      },
      undefined,
      { onprogress: (p) => progress.push(p.message ?? '') },
    )) as CallToolResult;
    expect(ran.structuredContent).toMatchObject({
      exitCode: 3,
      stdout: 'hello mcp\n/tmp\n',
      stderr: 'oops\n',
    });
    expect(progress.join('')).toContain('hello mcp');

    // A background command and its output, read later.
    const bg = await ok<{ pid: number }>(client, 'run_command', {
      sandboxId: id,
      command: 'for i in 1 2 3; do echo line$i; sleep 0.2; done',
      background: true,
    });
    const out = await ok(client, 'read_command_output', { sandboxId: id, pid: bg.pid, waitSeconds: 10 });
    expect(out).toMatchObject({ running: false, exitCode: 0, stdout: 'line1\nline2\nline3\n' });

    // Files: write, read back, list, remove; a binary file comes back as base64.
    const written = await ok<{ path: string }>(client, 'write_file', {
      sandboxId: id,
      path: 'notes/a.txt',
      content: 'héllo\n',
    });
    expect(written.path).toBe('/home/user/notes/a.txt');
    expect(text(await call(client, 'read_file', { sandboxId: id, path: '~/notes/a.txt' }))).toBe('héllo\n');
    const binary = Buffer.from([0, 255, 1, 254]).toString('base64');
    await ok(client, 'write_file', {
      sandboxId: id,
      path: '/tmp/b.bin',
      content: binary,
      encoding: 'base64',
    });
    expect(await ok(client, 'read_file', { sandboxId: id, path: '/tmp/b.bin' })).toMatchObject({
      encoding: 'base64',
      content: binary,
    });
    const dir = await ok<{ entries: Array<{ path: string; type: string }> }>(client, 'list_files', {
      sandboxId: id,
      path: 'notes',
    });
    expect(dir.entries).toMatchObject([{ path: '/home/user/notes/a.txt', type: 'file' }]);
    await ok(client, 'remove_file', { sandboxId: id, path: 'notes' });
    const gone = await call(client, 'read_file', { sandboxId: id, path: 'notes/a.txt' });
    expect(gone.isError).toBe(true);
    expect(text(gone)).toMatch(/^not_found/);

    // A port: a server in the sandbox, reached with the header form of the URL.
    await ok(client, 'run_command', {
      sandboxId: id,
      command:
        'mkdir -p /tmp/www && echo served > /tmp/www/i.txt && cd /tmp/www && exec python3 -m http.server 8000',
      background: true,
    });
    const exposed = await ok<{ url: string; viaHeaders: { url: string; headers: Record<string, string> } }>(
      client,
      'expose_port',
      {
        sandboxId: id,
        port: 8000,
      },
    );
    expect(exposed.url).toBe(`http://8000-${id}.${cove.domain}`);
    let body = '';
    for (let i = 0; i < 50 && body !== 'served\n'; i++) {
      const res = await fetch(`${exposed.viaHeaders.url}/i.txt`, { headers: exposed.viaHeaders.headers });
      body = await res.text();
      if (body !== 'served\n') await new Promise((r) => setTimeout(r, 100));
    }
    expect(body).toBe('served\n');

    // The resources: the list, and the sandbox's log.
    const list = await client.readResource({ uri: 'cove://sandboxes' });
    expect((list.contents[0] as { text: string }).text).toContain(id);
    const log = await client.readResource({ uri: `cove://sandboxes/${id}/logs` });
    expect((log.contents[0] as { text: string }).text).toMatch(/sandbox created .*via=mcp/);

    await ok(client, 'sandbox_set_timeout', { sandboxId: id, timeoutSeconds: 60 });
    expect(await ok(client, 'sandbox_kill', { sandboxId: id })).toEqual({ sandboxId: id, killed: true });
    expect(() => cove.manager.get(id)).toThrow(/not found/);
    await transport.terminateSession();
    await client.close();
  });

  it('answers errors as tool errors and keeps serving', async () => {
    const { client, transport } = await httpClient();
    const unknown = await call(client, 'run_command', { sandboxId: 'nope', command: 'true' });
    expect(unknown).toMatchObject({ isError: true });
    expect(text(unknown)).toBe('not_found: sandbox nope not found');
    const invalid = await call(client, 'sandbox_set_timeout', { sandboxId: 'nope', timeoutSeconds: -1 });
    expect(invalid.isError).toBe(true);
    expect(text(await call(client, 'sandbox_create', { template: 'no-such-template' }))).toMatch(/template/);
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    await transport.terminateSession();
    await client.close();
  });

  it('cancelling a command kills it; ending the session kills its sandboxes (COVE_MCP_CLEANUP=kill)', async () => {
    const { client, transport } = await httpClient();
    const { sandboxId: id } = await ok<{ sandboxId: string }>(client, 'sandbox_create', {
      timeoutSeconds: 120,
    });
    const abort = new AbortController();
    const running = client.callTool(
      {
        name: 'run_command',
        arguments: { sandboxId: id, command: 'echo started > /tmp/s; exec sleep 1000' },
      },
      undefined,
      { signal: abort.signal },
    );
    running.catch(() => undefined);
    for (let i = 0; i < 50; i++) {
      const r = await call(client, 'run_command', {
        sandboxId: id,
        command: 'cat /tmp/s 2>/dev/null || true',
      });
      if ((r.structuredContent as { stdout: string }).stdout === 'started\n') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    abort.abort('enough');
    await expect(running).rejects.toThrow();
    let sleeping = '1';
    for (let i = 0; i < 50 && sleeping !== '0'; i++) {
      const r = await ok<{ stdout: string }>(client, 'run_command', {
        sandboxId: id,
        command: 'pgrep -xc sleep || true',
      });
      sleeping = r.stdout.trim();
      if (sleeping !== '0') await new Promise((r) => setTimeout(r, 100));
    }
    expect(sleeping).toBe('0');

    await transport.terminateSession();
    await client.close();
    expect(() => cove.manager.get(id)).toThrow(/not found/);
  });

  it('serves the same tools on stdio through `cove mcp`', async () => {
    const transport = new StdioClientTransport({
      command: join(import.meta.dirname, '..', 'bin', 'cove'),
      args: ['mcp'],
      env: { PATH: process.env.PATH ?? '', COVE_URL: cove.url, COVE_API_KEY: cove.apiKey },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'cove-stdio-test', version: '1' });
    await client.connect(transport);
    expect((await client.listTools()).tools.map((t) => t.name)).toContain('run_command');
    const { sandboxId: id } = await ok<{ sandboxId: string }>(client, 'sandbox_create', {
      timeoutSeconds: 120,
    });
    expect(await ok(client, 'run_command', { sandboxId: id, command: 'echo via stdio' })).toMatchObject({
      exitCode: 0,
      stdout: 'via stdio\n',
    });
    expect((await call(client, 'sandbox_kill', { sandboxId: 'nope' })).isError).toBe(true);
    await client.close(); // the relay ends the server session: its sandbox is killed
    for (let i = 0; i < 50 && cove.manager.list().some((s) => s.id === id); i++)
      await new Promise((r) => setTimeout(r, 100));
    expect(cove.manager.list().map((s) => s.id)).not.toContain(id);
  });

  it('tells a stdio client that its key is wrong, as an error reply', async () => {
    const transport = new StdioClientTransport({
      command: join(import.meta.dirname, '..', 'bin', 'cove'),
      args: ['mcp'],
      env: { PATH: process.env.PATH ?? '', COVE_URL: cove.url, COVE_API_KEY: 'e2b_' + '2'.repeat(40) },
      stderr: 'pipe',
    });
    const client = new Client({ name: 'cove-stdio-test', version: '1' });
    await expect(client.connect(transport)).rejects.toThrow(/401.*COVE_API_KEY/s);
    await client.close();
  });
});
