import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';
import { CoveError } from '../core/errors.ts';
import type { McpDeps } from './deps.ts';
import { guarded, json, type ToolExtra } from './result.ts';
import { shell } from './shell.ts';

const DISPLAY = ':0';
const sandboxId = z.string().min(1).max(128).describe('The sandbox id (a desktop sandbox)');
const coordinate = z.number().int().min(0).max(16_384);

/**
 * Starts the desktop when nothing serves the display yet, as `@e2b/desktop` does at create
 * (Xvfb 1024x768, then XFCE), so that a desktop sandbox made with sandbox_create works the same
 * as one made by that SDK (whose display is already up: then this only checks).
 */
const ENSURE_DISPLAY = `
command -v xdotool >/dev/null || { echo 'this sandbox has no desktop (create it from the desktop template)' >&2; exit 3; }
export DISPLAY=${DISPLAY}
if ! xdpyinfo >/dev/null 2>&1; then
  setsid Xvfb $DISPLAY -ac -screen 0 1024x768x24 -retro -dpi 96 -nolisten tcp -nolisten unix </dev/null >/tmp/cove-xvfb.log 2>&1 &
  for i in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
  setsid startxfce4 </dev/null >/tmp/cove-xfce.log 2>&1 &
  for i in $(seq 300); do pgrep -x xfwm4 >/dev/null && pgrep -x xfdesktop >/dev/null && break; sleep 0.2; done
fi
xdpyinfo >/dev/null 2>&1 || { echo 'the display did not start (see /tmp/cove-xvfb.log)' >&2; exit 4; }
`;

/** The xdotool key names of the keys people call otherwise (as @e2b/desktop's mapKey). */
const KEY_NAMES: Record<string, string> = {
  enter: 'Return',
  return: 'Return',
  esc: 'Escape',
  escape: 'Escape',
  backspace: 'BackSpace',
  tab: 'Tab',
  space: 'space',
  up: 'Up',
  down: 'Down',
  left: 'Left',
  right: 'Right',
  delete: 'Delete',
  home: 'Home',
  end: 'End',
  pageup: 'Page_Up',
  pagedown: 'Page_Down',
  ctrl: 'ctrl',
  control: 'ctrl',
  alt: 'alt',
  shift: 'shift',
  super: 'super',
  meta: 'super',
};
const quote = (s: string) => `'${s.replace(/'/g, `'"'"'`)}'`;

/** desktop_screenshot and desktop_action: what @e2b/desktop runs, as commands in the sandbox. */
export function registerDesktopTools(server: McpServer, deps: McpDeps): void {
  const { manager, log } = deps;

  async function run(id: string, script: string, signal: AbortSignal) {
    const r = await shell(manager, id, ENSURE_DISPLAY + script, {
      env: { DISPLAY },
      timeoutMs: 60_000,
      signal,
    });
    if (r.exitCode !== 0)
      throw new CoveError(
        'invalid_argument',
        r.stderr.trim().split('\n').slice(-3).join('; ') || `exit ${r.exitCode}`,
      );
    return r.stdout;
  }

  server.registerTool(
    'desktop_screenshot',
    {
      title: 'Screenshot a desktop',
      description:
        'A PNG of the whole screen of a desktop sandbox (template `desktop`), pointer included, as ' +
        'image content. Starts the desktop first if it is not running yet.',
      inputSchema: { sandboxId },
    },
    guarded(log, 'desktop_screenshot', async (args, extra: ToolExtra) => {
      const file = `/tmp/cove-screenshot-${process.hrtime.bigint()}.png`;
      await run(args.sandboxId, `scrot --pointer ${file}`, extra.signal);
      const who = await manager.user(args.sandboxId, manager.defaultUser(args.sandboxId));
      const as = { uid: who.uid, gid: who.gid, elevated: true };
      const agent = manager.agent(args.sandboxId);
      const chunks: Buffer[] = [];
      try {
        for await (const chunk of agent.readFile(file, as)) chunks.push(chunk);
      } finally {
        await agent.remove(file, as).catch(() => undefined);
      }
      return {
        content: [{ type: 'image', data: Buffer.concat(chunks).toString('base64'), mimeType: 'image/png' }],
      };
    }),
  );

  server.registerTool(
    'desktop_action',
    {
      title: 'Mouse and keyboard on a desktop',
      description:
        'Sends one mouse or keyboard action to a desktop sandbox: `move` (x, y), `click` (x, y ' +
        'optional; button left|right|middle; double), `drag` (x, y → toX, toY), `scroll` (direction ' +
        'up|down, amount), `type` (text), `key` (keys, e.g. ["ctrl", "c"] or ["enter"]). Returns the ' +
        'pointer position afterwards; take a desktop_screenshot to see the effect.',
      inputSchema: {
        sandboxId,
        action: z.enum(['move', 'click', 'drag', 'scroll', 'type', 'key']),
        x: coordinate.optional(),
        y: coordinate.optional(),
        toX: coordinate.optional(),
        toY: coordinate.optional(),
        button: z.enum(['left', 'right', 'middle']).optional(),
        double: z.boolean().optional(),
        direction: z.enum(['up', 'down']).optional(),
        amount: z.number().int().min(1).max(100).optional(),
        text: z.string().max(10_000).optional(),
        keys: z
          .array(z.string().regex(/^[A-Za-z0-9_]{1,32}$/))
          .min(1)
          .max(8)
          .optional(),
      },
    },
    guarded(log, 'desktop_action', async (args, extra: ToolExtra) => {
      const need = <T>(value: T | undefined, name: string): T => {
        if (value === undefined) throw new CoveError('invalid_argument', `${args.action} needs ${name}`);
        return value;
      };
      const move = (x: number, y: number) => `xdotool mousemove --sync ${x} ${y}\n`;
      let script = '';
      switch (args.action) {
        case 'move':
          script = move(need(args.x, 'x'), need(args.y, 'y'));
          break;
        case 'click': {
          if (args.x !== undefined || args.y !== undefined)
            script = move(need(args.x, 'x'), need(args.y, 'y'));
          const button = { left: 1, middle: 2, right: 3 }[args.button ?? 'left'];
          script += `xdotool click ${args.double ? '--repeat 2 ' : ''}${button}\n`;
          break;
        }
        case 'drag':
          script =
            move(need(args.x, 'x'), need(args.y, 'y')) +
            'xdotool mousedown 1\n' +
            move(need(args.toX, 'toX'), need(args.toY, 'toY')) +
            'xdotool mouseup 1\n';
          break;
        case 'scroll':
          script = `xdotool click --repeat ${args.amount ?? 1} ${args.direction === 'up' ? 4 : 5}\n`;
          break;
        case 'type':
          script = `xdotool type --delay 12 -- ${quote(need(args.text, 'text'))}\n`;
          break;
        case 'key':
          script = `xdotool key ${need(args.keys, 'keys')
            .map((k) => KEY_NAMES[k.toLowerCase()] ?? k)
            .join('+')}\n`;
          break;
      }
      const out = await run(args.sandboxId, script + 'xdotool getmouselocation --shell', extra.signal);
      const pos: Record<string, string> = Object.fromEntries(
        out.split('\n').map((l) => l.split('=') as [string, string]),
      );
      return json({
        sandboxId: args.sandboxId,
        action: args.action,
        pointer: { x: Number(pos.X), y: Number(pos.Y) },
      });
    }),
  );
}
