import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { Sandbox, type CommandExitError } from 'e2b';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove, templateBuilt, testConfig } from './helpers.ts';

const built = await templateBuilt('mcp-gateway');

/**
 * A stdio MCP server with no dependencies (newline-delimited JSON-RPC), as a repository the
 * test serves: `greet` answers with GREETING (envs) and what installCmd left in .installed;
 * `crash` exits, so the gateway restarts it.
 */
const HELLO_SERVER = `
const fs = require('fs');
const installed = fs.existsSync('.installed') ? fs.readFileSync('.installed', 'utf8').trim() : 'no';
const send = (m) => process.stdout.write(JSON.stringify({ jsonrpc: '2.0', ...m }) + '\\n');
require('readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line);
  if (msg.id === undefined) return;
  if (msg.method === 'initialize')
    return send({ id: msg.id, result: { protocolVersion: msg.params.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'hello', version: '1' } } });
  if (msg.method === 'tools/list')
    return send({ id: msg.id, result: { tools: [
      { name: 'greet', description: 'Greets', inputSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } },
      { name: 'crash', description: 'Exits', inputSchema: { type: 'object' } },
    ] } });
  if (msg.method === 'tools/call' && msg.params.name === 'crash') process.exit(3);
  if (msg.method === 'tools/call')
    return send({ id: msg.id, result: { content: [{ type: 'text', text: process.env.GREETING + ' ' + msg.params.arguments.name + ', installed: ' + installed + ', pid ' + process.pid }] } });
  send({ id: msg.id, error: { code: -32601, message: 'no method ' + msg.method } });
});
`;

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address() as { port: number };
  await new Promise((r) => srv.close(r));
  return port;
}

/**
 * E2B's `mcp` option (issue 12 part 2): `Sandbox.create({ mcp })` of the unmodified `e2b` SDK
 * starts Cove's gateway in an mcp-gateway sandbox; the official MCP client reaches it at
 * getMcpUrl() with getMcpToken(). A github/ server comes from a git daemon this test runs on
 * the loopback (COVE_MCP_GIT_BASE); `memory` is a catalog server installed from npm into the
 * template.
 */
describe.skipIf(!canRunSandboxes || !built)('MCP servers inside a sandbox (mcp-gateway)', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let git: ChildProcess;
  let gitDir: string;

  beforeAll(async () => {
    gitDir = mkdtempSync(join(tmpdir(), 'cove-git-'));
    const repo = join(gitDir, 'cove-test', 'hello-mcp');
    mkdirSync(repo, { recursive: true });
    writeFileSync(join(repo, 'server.js'), HELLO_SERVER);
    const g = (...args: string[]) => execFileSync('git', ['-C', repo, ...args], { stdio: 'pipe' });
    g('init', '-q', '-b', 'main');
    g('add', 'server.js');
    g('-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'hello');
    const port = await freePort();
    git = spawn(
      'git',
      [
        'daemon',
        '--reuseaddr',
        '--export-all',
        `--base-path=${gitDir}`,
        '--listen=127.0.0.1',
        `--port=${port}`,
      ],
      {
        stdio: 'ignore',
      },
    );
    const base = `git://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      try {
        execFileSync('git', ['ls-remote', `${base}/cove-test/hello-mcp`], { stdio: 'pipe' });
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    cove = await startTestCove(testConfig({ mcpGitBase: base }));
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    git?.kill();
    if (gitDir) rmSync(gitDir, { recursive: true, force: true });
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  /** The MCP client at getMcpUrl(): its host names the sandbox and port, sent as Cove's headers. */
  async function connect(sbx: Sandbox, token: string | undefined) {
    const url = new URL(sbx.getMcpUrl());
    const [port, id] = url.hostname.split('.')[0]!.split(/-(.*)/s);
    const transport = new StreamableHTTPClientTransport(url, {
      requestInit: { headers: token ? { authorization: `Bearer ${token}` } : {} },
      fetch: (input, init) => {
        const headers = new Headers(init?.headers);
        headers.set('e2b-sandbox-id', id!);
        headers.set('e2b-sandbox-port', port!);
        return fetch(new URL(new URL(String(input)).pathname, cove.url), { ...init, headers });
      },
    });
    const client = new Client({ name: 'cove-gateway-test', version: '1' });
    await client.connect(transport);
    return client;
  }
  const text = (r: unknown) => ((r as CallToolResult).content[0] as { text: string }).text;

  it('serves a github/ server and a catalog server at getMcpUrl(), with the token only', async () => {
    const sbx = await Sandbox.create({
      timeoutMs: 300_000,
      mcp: {
        'github/cove-test/hello-mcp': {
          installCmd: 'echo yes > .installed',
          runCmd: 'node server.js',
          envs: { GREETING: 'hello' },
        },
        memory: {},
        filesystem: { paths: ['/tmp'] },
        sequentialthinking: {},
      },
    });
    expect(sbx.getMcpUrl()).toMatch(new RegExp(`^https://50005-${sbx.sandboxId}\\.[^/]+/mcp$`));
    const token = await sbx.getMcpToken();
    expect(token).toMatch(/^[0-9a-f-]{36}$/);

    await expect(connect(sbx, undefined)).rejects.toThrow(/Bearer <token> is required/);
    await expect(connect(sbx, 'not-the-token-at-all')).rejects.toThrow(/Bearer <token> is required/);

    const client = await connect(sbx, token);
    const names = (await client.listTools()).tools.map((t) => t.name);
    expect(names).toEqual(
      expect.arrayContaining([
        'cove-test-hello-mcp__greet',
        'cove-test-hello-mcp__crash',
        'memory__create_entities',
        'memory__read_graph',
      ]),
    );
    const greeted = text(
      await client.callTool({ name: 'cove-test-hello-mcp__greet', arguments: { name: 'cove' } }),
    );
    expect(greeted).toMatch(/^hello cove, installed: yes, pid \d+$/);

    await client.callTool({
      name: 'memory__create_entities',
      arguments: { entities: [{ name: 'Cove', entityType: 'runtime', observations: ['runs sandboxes'] }] },
    });
    expect(text(await client.callTool({ name: 'memory__read_graph', arguments: {} }))).toContain(
      'runs sandboxes',
    );

    // A server that dies is restarted (after 1 s), with a new process.
    const crashed = (await client.callTool({
      name: 'cove-test-hello-mcp__crash',
      arguments: {},
    })) as CallToolResult;
    expect(crashed.isError).toBe(true);
    let again = '';
    for (let i = 0; i < 100 && !again.startsWith('hello'); i++) {
      again = text(
        await client.callTool({ name: 'cove-test-hello-mcp__greet', arguments: { name: 'again' } }),
      );
      if (!again.startsWith('hello')) {
        expect(again).toMatch(/restarting/);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(again).toMatch(/^hello again, installed: yes, pid \d+$/);
    expect(again.split('pid ')[1]).not.toBe(greeted.split('pid ')[1]);
    const unknown = (await client.callTool({ name: 'nope__x', arguments: {} })) as CallToolResult;
    expect(unknown.isError).toBe(true);
    await client.close();
    await sbx.kill();
  });

  it('fails the create with the name of a server it cannot run', async () => {
    const before = cove.manager.list().length;
    await expect(Sandbox.create({ mcp: { noSuchServer: {} } as never })).rejects.toThrow(/noSuchServer/);
    await expect(Sandbox.create({ mcp: { 'github/cove-test/missing': { runCmd: 'true' } } })).rejects.toThrow(
      /github\/cove-test\/missing.*clon/,
    );
    expect(cove.manager.list().length).toBe(before);

    // The gateway itself says the same when run by hand, and wants the token.
    const sbx = await Sandbox.create('mcp-gateway', { timeoutMs: 120_000 });
    const run = (config: string, token = 'x'.repeat(36)) =>
      sbx.commands.run(`mcp-gateway --config '${config}'`, {
        user: 'root',
        envs: { GATEWAY_ACCESS_TOKEN: token },
      });
    const stderr = (config: string, token?: string) =>
      run(config, token).then(
        () => 'exited 0',
        (err: unknown) => (err as CommandExitError).stderr,
      );
    expect(await stderr('{"noSuchServer":{}}')).toMatch(
      /unknown MCP server "noSuchServer": this gateway runs filesystem, memory/,
    );
    expect(await stderr('{}', '')).toMatch(/GATEWAY_ACCESS_TOKEN must be set/);
    expect(await stderr('{"filesystem":{}}')).toMatch(/filesystem: paths must be a non-empty list/);
    await sbx.kill();
  });
});
