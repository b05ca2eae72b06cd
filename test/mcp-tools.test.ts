import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove, templateBuilt, testConfig } from './helpers.ts';

const interpreter = await templateBuilt('code-interpreter-v1');
const desktop = await templateBuilt('desktop');

/**
 * Cove's MCP tools beyond commands and files (issue 12 part 1): run_code on
 * code-interpreter-v1, the desktop's screenshot and input, pause and resume, through the
 * official SDK's client over Streamable HTTP.
 */
describe.skipIf(!canRunSandboxes)('Cove as an MCP server: code, desktop, pause', () => {
  let cove: Cove & { config: Config; apiKey: string };
  let client: Client;
  let transport: StreamableHTTPClientTransport;

  const call = async (name: string, args: Record<string, unknown>) =>
    (await client.callTool({ name, arguments: args }, undefined, { timeout: 180_000 })) as CallToolResult;
  async function ok<T = Record<string, unknown>>(name: string, args: Record<string, unknown>) {
    const result = await call(name, args);
    expect(result.isError, JSON.stringify(result.content).slice(0, 2000)).toBeFalsy();
    return result.structuredContent as T;
  }
  const text = (r: CallToolResult) => (r.content[0] as { text: string }).text;
  const create = async (template: string) =>
    (await ok<{ sandboxId: string }>('sandbox_create', { template, timeoutSeconds: 300 })).sandboxId;

  beforeAll(async () => {
    cove = await startTestCove(testConfig({ mcpCleanup: 'kill' }));
    transport = new StreamableHTTPClientTransport(new URL('/mcp', cove.url), {
      requestInit: { headers: { 'x-api-key': cove.apiKey } },
    });
    client = new Client({ name: 'cove-test', version: '1' });
    await client.connect(transport);
  });

  afterAll(async () => {
    await transport?.terminateSession().catch(() => undefined); // kills what the tests left
    await client?.close();
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it.skipIf(!interpreter)(
    'runs code: state kept, stdout as progress, errors, a chart as an image',
    async () => {
      const id = await create('code-interpreter-v1');
      expect(await ok('run_code', { sandboxId: id, code: 'x = 41' })).toMatchObject({ results: [] });
      const progress: string[] = [];
      const r = (await client.callTool(
        { name: 'run_code', arguments: { sandboxId: id, code: 'print("out", x)\nx + 1' } },
        undefined,
        { onprogress: (p) => progress.push(p.message ?? '') },
      )) as CallToolResult;
      expect(r.structuredContent).toMatchObject({
        stdout: 'out 41\n',
        results: [{ isMainResult: true, text: '42' }],
      });
      expect(r.content[1]).toEqual({ type: 'text', text: '42' });
      expect(progress).toContain('stdout: out 41\n');

      const raised = await ok<{ error: { name: string; value: string } }>('run_code', {
        sandboxId: id,
        code: '1/0',
      });
      expect(raised.error).toMatchObject({ name: 'ZeroDivisionError' });

      const js = await ok('run_code', {
        sandboxId: id,
        language: 'javascript',
        code: '[1,2,3].map(n => n * 2)',
      });
      expect(JSON.stringify(js)).toContain('2, 4, 6');

      const chart = await call('run_code', {
        sandboxId: id,
        code: 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")\nplt.show()',
      });
      const image = chart.content.find((c) => c.type === 'image') as { data: string; mimeType: string };
      expect(image.mimeType).toBe('image/png');
      expect(Buffer.from(image.data, 'base64').subarray(1, 4).toString()).toBe('PNG');
      expect(JSON.stringify(chart.structuredContent)).toContain('squares'); // the chart's data too

      const ctx = await ok<{ contextId: string }>('create_code_context', { sandboxId: id });
      const alone = await ok<{ error?: { name: string } }>('run_code', {
        sandboxId: id,
        contextId: ctx.contextId,
        code: 'x',
      });
      expect(alone.error?.name).toBe('NameError'); // a context of its own
      const both = await call('run_code', {
        sandboxId: id,
        contextId: ctx.contextId,
        language: 'python',
        code: '1',
      });
      expect(text(both)).toMatch(/^invalid_argument: give language or contextId/);
      const missing = await call('run_code', { sandboxId: id, contextId: 'nope', code: '1' });
      expect(missing.isError).toBe(true);
      await ok('sandbox_kill', { sandboxId: id });
    },
  );

  it('says run_code needs the interpreter template, and the desktop tools a desktop', async () => {
    const id = await create('base');
    const code = await call('run_code', { sandboxId: id, code: '1' });
    expect(code.isError).toBe(true);
    expect(text(code)).toMatch(/code-interpreter-v1/);
    const shot = await call('desktop_screenshot', { sandboxId: id });
    expect(text(shot)).toMatch(/no desktop/);
    await ok('sandbox_kill', { sandboxId: id });
  });

  it.skipIf(!desktop)('screenshots a desktop and moves, clicks and types in it', async () => {
    const id = await create('desktop');
    const first = await call('desktop_screenshot', { sandboxId: id }); // starts Xvfb and XFCE
    expect(first.isError, JSON.stringify(first.content).slice(0, 500)).toBeFalsy();
    const png = Buffer.from((first.content[0] as { data: string }).data, 'base64');
    expect(png.subarray(1, 4).toString()).toBe('PNG');
    expect(png.readUInt32BE(16)).toBe(1024); // IHDR width
    expect(png.readUInt32BE(20)).toBe(768);

    expect(await ok('desktop_action', { sandboxId: id, action: 'move', x: 300, y: 200 })).toMatchObject({
      pointer: { x: 300, y: 200 },
    });
    // A terminal, typed into: its effect is a file, and the screen changes.
    await ok('run_command', { sandboxId: id, command: 'DISPLAY=:0 xfce4-terminal >/dev/null 2>&1 &' });
    let win = '';
    for (let i = 0; i < 100 && !win; i++) {
      const r = await ok<{ stdout: string }>('run_command', {
        sandboxId: id,
        command: 'DISPLAY=:0 xdotool search --onlyvisible --class xfce4-terminal || true',
      });
      win = r.stdout.trim();
      if (!win) await new Promise((r) => setTimeout(r, 200));
    }
    expect(win).not.toBe('');
    await ok('desktop_action', { sandboxId: id, action: 'click', x: 512, y: 384 });
    await ok('desktop_action', { sandboxId: id, action: 'type', text: "echo 'typed via mcp' > /tmp/t" });
    await ok('desktop_action', { sandboxId: id, action: 'key', keys: ['enter'] });
    let typed = '';
    for (let i = 0; i < 50 && typed !== 'typed via mcp\n'; i++) {
      typed = (
        await ok<{ stdout: string }>('run_command', {
          sandboxId: id,
          command: 'cat /tmp/t 2>/dev/null || true',
        })
      ).stdout;
      if (typed !== 'typed via mcp\n') await new Promise((r) => setTimeout(r, 200));
    }
    expect(typed).toBe('typed via mcp\n');
    const second = await call('desktop_screenshot', { sandboxId: id });
    expect((second.content[0] as { data: string }).data).not.toBe(
      (first.content[0] as { data: string }).data,
    );

    const bad = await call('desktop_action', { sandboxId: id, action: 'drag', x: 1, y: 1 });
    expect(text(bad)).toBe('invalid_argument: drag needs toX');
    await ok('sandbox_kill', { sandboxId: id });
  });

  it('pauses and resumes a sandbox, which keeps its files', async () => {
    const id = await create('base');
    await ok('write_file', { sandboxId: id, path: '/tmp/kept', content: 'still here' });
    expect(await ok('sandbox_pause', { sandboxId: id })).toMatchObject({ state: 'paused' });
    const refused = await call('run_command', { sandboxId: id, command: 'true' });
    expect(text(refused)).toMatch(/paused/);
    expect(text(await call('sandbox_pause', { sandboxId: id }))).toMatch(/^conflict: .*already paused/);
    expect(await ok('sandbox_resume', { sandboxId: id, timeoutSeconds: 120 })).toMatchObject({
      state: 'running',
      resumed: true,
    });
    expect(text(await call('read_file', { sandboxId: id, path: '/tmp/kept' }))).toBe('still here');
    expect(await ok('sandbox_resume', { sandboxId: id })).toMatchObject({ resumed: false });
    await ok('sandbox_kill', { sandboxId: id });
  });
});
