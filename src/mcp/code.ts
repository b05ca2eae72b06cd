import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { McpDeps } from './deps.ts';
import { guarded, type ToolExtra } from './result.ts';

/** The code interpreter's server in code-interpreter-v1 (spec 5, docs/code-interpreter.md). */
const INTERPRETER_PORT = 49999;
const sandboxId = z.string().min(1).max(128).describe('The sandbox id (a code-interpreter-v1 sandbox)');
/** Result formats shown as text, in this order of preference, when a result has no image. */
const TEXT_FORMATS = ['text', 'markdown', 'html', 'latex', 'javascript'] as const;

type Line = Record<string, unknown> & { type: string };

/**
 * run_code and create_code_context: the code interpreter's own HTTP API (spec 5.2), called on
 * the sandbox's address as the E2B code-interpreter SDK calls it through the port proxy, so
 * MCP runs code exactly as `sbx.runCode` does (contexts, kernels, charts).
 */
export function registerCodeTools(server: McpServer, deps: McpDeps): void {
  const { manager, log } = deps;

  async function interpreter(
    id: string,
    path: string,
    body: unknown,
    signal: AbortSignal,
  ): Promise<Response> {
    const info = manager.get(id);
    if (info.state !== 'running') throw new CoveError('conflict', `sandbox ${id} is ${info.state}`);
    const res = await fetch(`http://${info.address}:${INTERPRETER_PORT}${path}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(info.envdAccessToken && { 'x-access-token': info.envdAccessToken }),
      },
      body: JSON.stringify(body),
      signal,
    }).catch((err: unknown) => {
      if (signal.aborted) throw err;
      throw new CoveError(
        'invalid_argument',
        `sandbox ${id} has no code interpreter (create it from code-interpreter-v1): ${String(err)}`,
      );
    });
    if (!res.ok) {
      const reason = (await res.text()).slice(0, 2000);
      throw new CoveError(res.status === 404 ? 'not_found' : 'invalid_argument', reason || res.statusText);
    }
    return res;
  }

  server.registerTool(
    'run_code',
    {
      title: 'Run code',
      description:
        'Runs code in a code-interpreter-v1 sandbox, in a Jupyter kernel whose state persists between ' +
        'calls (variables, imports) per context. Languages: python (default), javascript, typescript, ' +
        'r, java, bash. Returns stdout, stderr, the error with its traceback if the code raised, and ' +
        'each result: charts and images (matplotlib, PIL) as image content, everything else as text. ' +
        'stdout/stderr lines are sent as progress notifications; cancelling interrupts the kernel.',
      inputSchema: {
        sandboxId,
        code: z.string().min(1).max(1_048_576).describe('The code to run'),
        language: z
          .string()
          .max(32)
          .optional()
          .describe('python (default), javascript, typescript, r, java, bash'),
        contextId: z
          .string()
          .max(128)
          .optional()
          .describe('A context from create_code_context (not with language)'),
        envs: z.record(z.string(), z.string()).optional().describe('Environment variables for this run only'),
        timeoutSeconds: z
          .number()
          .int()
          .min(1)
          .max(3600)
          .optional()
          .describe('Interrupt after this long (60)'),
      },
    },
    guarded(log, 'run_code', async (args, extra: ToolExtra) => {
      if (args.language !== undefined && args.contextId !== undefined)
        throw new CoveError('invalid_argument', 'give language or contextId, not both');
      const abort = AbortSignal.any([extra.signal, AbortSignal.timeout((args.timeoutSeconds ?? 60) * 1000)]);
      const res = await interpreter(
        args.sandboxId,
        '/execute',
        {
          code: args.code,
          ...(args.language !== undefined && { language: args.language }),
          ...(args.contextId !== undefined && { context_id: args.contextId }),
          ...(args.envs && { env_vars: args.envs }),
        },
        abort,
      );
      const lines: Line[] = [];
      let seen = 0;
      try {
        for await (const line of ndjson(res.body!)) {
          lines.push(line);
          const token = extra._meta?.progressToken;
          if (token !== undefined && (line.type === 'stdout' || line.type === 'stderr'))
            void extra
              .sendNotification({
                method: 'notifications/progress',
                params: {
                  progressToken: token,
                  progress: ++seen,
                  message: `${line.type}: ${String(line.text)}`,
                },
              })
              .catch(() => undefined);
        }
      } catch (err) {
        if (extra.signal.aborted) throw err;
        if (abort.aborted)
          throw new CoveError(
            'deadline_exceeded',
            `the code ran longer than ${args.timeoutSeconds ?? 60} s and was interrupted`,
          );
        throw err;
      }
      return executionResult(lines);
    }),
  );

  server.registerTool(
    'create_code_context',
    {
      title: 'Create a code context',
      description:
        'Creates a separate kernel (its own variables and working directory) in a code-interpreter-v1 ' +
        'sandbox, for run_code `contextId`.',
      inputSchema: {
        sandboxId,
        language: z
          .string()
          .max(32)
          .optional()
          .describe('python (default), javascript, typescript, r, java, bash'),
        cwd: z.string().max(4096).optional().describe('Working directory (default /home/user)'),
      },
    },
    guarded(log, 'create_code_context', async (args, extra: ToolExtra) => {
      const res = await interpreter(
        args.sandboxId,
        '/contexts',
        { ...(args.language && { language: args.language }), ...(args.cwd && { cwd: args.cwd }) },
        extra.signal,
      );
      const ctx = (await res.json()) as { id: string; language: string; cwd: string };
      const value = { contextId: ctx.id, language: ctx.language, cwd: ctx.cwd };
      return { content: [{ type: 'text', text: JSON.stringify(value) }], structuredContent: value };
    }),
  );
}

/** The /execute stream's lines (spec 5.3: one JSON object per line). */
async function* ndjson(body: ReadableStream<Uint8Array>): AsyncGenerator<Line> {
  const decoder = new TextDecoder();
  let rest = '';
  for await (const chunk of body) {
    rest += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const text = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      if (text.trim()) yield JSON.parse(text) as Line;
    }
  }
  if (rest.trim()) yield JSON.parse(rest) as Line;
}

/**
 * An execution as MCP content: its logs and error as JSON text (and structured content), then
 * each result as an image (png, jpeg; svg as text) or its best text form. A raised exception
 * is a result (as in the SDK's `execution.error`), not a tool error.
 */
export function executionResult(lines: Line[]): CallToolResult {
  const text = (type: string) => lines.filter((l) => l.type === type).map((l) => String(l.text));
  const error = lines.find((l) => l.type === 'error');
  const results = lines.filter((l) => l.type === 'result');
  const content: CallToolResult['content'] = [];
  const summaries: Array<Record<string, unknown>> = [];
  for (const r of results) {
    const formats = Object.keys(r).filter((k) => !['type', 'is_main_result'].includes(k) && r[k] != null);
    summaries.push({
      isMainResult: r.is_main_result === true,
      formats,
      ...(typeof r.text === 'string' && { text: r.text }),
      ...(r.chart != null && { chart: r.chart }),
      ...(r.data != null && { data: r.data }),
      ...(r.json != null && { json: r.json }),
    });
    if (typeof r.png === 'string') content.push({ type: 'image', data: r.png, mimeType: 'image/png' });
    else if (typeof r.jpeg === 'string')
      content.push({ type: 'image', data: r.jpeg, mimeType: 'image/jpeg' });
    else {
      const format =
        TEXT_FORMATS.find((f) => typeof r[f] === 'string') ?? (typeof r.svg === 'string' ? 'svg' : undefined);
      if (format) content.push({ type: 'text', text: String(r[format]) });
    }
  }
  const value = {
    stdout: text('stdout').join(''),
    stderr: text('stderr').join(''),
    ...(error && { error: { name: error.name, value: error.value, traceback: error.traceback } }),
    results: summaries,
    ...(lines.some((l) => l.type === 'number_of_executions') && {
      executionCount: lines.find((l) => l.type === 'number_of_executions')!.execution_count,
    }),
  };
  return {
    content: [{ type: 'text', text: JSON.stringify(value, null, 2) }, ...content],
    structuredContent: value,
  };
}
