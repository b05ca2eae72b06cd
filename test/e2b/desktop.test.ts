import { writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove, templateBuilt } from '../helpers.ts';
import { changedPixels, decodePng, RfbClient, type Rect } from './desktop-helpers.ts';

const loadDesktop = () => import('@e2b/desktop');
type Desktop = Awaited<ReturnType<typeof loadDesktop>>;
type DesktopSandbox = InstanceType<Desktop['Sandbox']>;

const TEMPLATE = 'desktop';
const built = await templateBuilt(TEMPLATE);

/** Where scripts/computer-use-screenshot.sh has the suite save the desktop (docs/computer-use.md). */
const SCREENSHOT_OUT = process.env.COVE_DESKTOP_SCREENSHOT;

/** A page that names, in its title, every input event it received (read with getWindowTitle). */
const EVENTS_PAGE = `<!doctype html><title>events:</title>
<body style="margin:0;height:4000px;background:#fff">
<script>
const seen = new Set();
const put = (e) => { seen.add(e); document.title = 'events:' + [...seen].join(','); };
let down;
addEventListener('mousedown', (e) => { if (e.button === 1) e.preventDefault(); down = [e.clientX, e.clientY]; });
addEventListener('mouseup', (e) => { if (down && Math.abs(e.clientX - down[0]) > 40) put('drag'); });
addEventListener('click', () => put('click'));
addEventListener('dblclick', () => put('dblclick'));
addEventListener('contextmenu', (e) => { e.preventDefault(); put('right'); });
addEventListener('auxclick', (e) => { if (e.button === 1) put('middle'); });
addEventListener('wheel', (e) => put(e.deltaY > 0 ? 'scrolldown' : 'scrollup'), { passive: true });
addEventListener('keydown', (e) => put('key-' + (e.shiftKey ? 'shift-' : '') + e.key));
</script>`;

/** Polls `probe` until `done` holds of its value (the desktop reacts asynchronously). */
async function until<T>(probe: () => Promise<T>, done: (v: T) => boolean, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined && done(v)) return v;
    if (Date.now() > deadline) return v as T;
    await new Promise((r) => setTimeout(r, 250));
  }
}

/**
 * Computer use (issue 11) through the unmodified `@e2b/desktop` 2.4.0 on Cove's `desktop`
 * template: every SDK method with a real effect checked, the noVNC stream through the port
 * proxy (with and without its password, whole screen and one window), and bad input.
 */
describe.skipIf(!canRunSandboxes || !built)(`@e2b/desktop on ${TEMPLATE}`, () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let desktop: Desktop;
  let d: DesktopSandbox;
  const [WIDTH, HEIGHT] = [800, 600];

  const geometry = async (windowId: string): Promise<Rect> => {
    const out = (await d.commands.run(`xdotool getwindowgeometry --shell ${windowId}`)).stdout;
    const get = (k: string) => Number(new RegExp(`^${k}=(\\d+)`, 'm').exec(out)?.[1]);
    return { x: get('X'), y: get('Y'), width: get('WIDTH'), height: get('HEIGHT') };
  };
  /**
   * stream.stop() signals x11vnc and noVNC and returns before they have exited; a start right
   * after it can find port 5900 still taken and fail (on E2B too): wait until both are gone.
   */
  const stopStream = async () => {
    await d.stream.stop();
    const listening = await until(
      async () => (await d.commands.run('netstat -tln')).stdout,
      (out) => !/:(5900|6080) /.test(out),
    );
    expect(listening).not.toMatch(/:(5900|6080) /);
  };
  const viaGateway = (port: number) => ({ 'E2b-Sandbox-Id': d.sandboxId, 'E2b-Sandbox-Port': String(port) });

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    desktop = await loadDesktop();
    d = await desktop.Sandbox.create({ resolution: [WIDTH, HEIGHT], timeoutMs: 600_000 });
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('takes a PNG screenshot of the configured size, and reports that size', async () => {
    const png = await d.screenshot();
    expect(Buffer.from(png.subarray(1, 4)).toString()).toBe('PNG');
    const img = decodePng(png);
    expect([img.width, img.height]).toEqual([WIDTH, HEIGHT]);
    expect(await d.getScreenSize()).toEqual({ width: WIDTH, height: HEIGHT });
  });

  it('launches a terminal found by its class, and typing into it runs a command and changes pixels', async () => {
    await d.launch('xfce4-terminal');
    const windows = await until(
      () => d.getApplicationWindows('xfce4-terminal'),
      (w) => w.length > 0,
    );
    expect(windows.length).toBeGreaterThan(0);
    const win = windows[0]!;
    expect(await d.getWindowTitle(win)).toMatch(/Terminal/);
    // Focus follows the new window; park the pointer in a corner so that it is not in the diff.
    expect(
      await until(
        () => d.getCurrentWindowId(),
        (id) => id === win,
      ),
    ).toBe(win);
    await d.moveMouse(WIDTH - 1, HEIGHT - 1);
    await d.wait(500);
    const before = decodePng(await d.screenshot());
    await d.write('echo typed by xdotool > /tmp/typed.txt');
    await d.press('enter');
    const typed = await until(
      () => d.files.read('/tmp/typed.txt'),
      (t) => t.length > 0,
    );
    expect(typed).toBe('typed by xdotool\n');
    const after = decodePng(await d.screenshot());
    expect(changedPixels(before, after, await geometry(win))).toBeGreaterThan(200);
    if (SCREENSHOT_OUT) writeFileSync(SCREENSHOT_OUT, await d.screenshot());
  });

  it('moves the cursor where asked, and clamps coordinates beyond the screen to its edge', async () => {
    await d.moveMouse(123, 234);
    expect(await d.getCursorPosition()).toEqual({ x: 123, y: 234 });
    await d.moveMouse(WIDTH + 4000, HEIGHT + 4000);
    expect(await d.getCursorPosition()).toEqual({ x: WIDTH - 1, y: HEIGHT - 1 });
    // A negative coordinate is an option to xdotool: the command fails, as it does on E2B.
    await expect(d.moveMouse(-5, 10)).rejects.toBeInstanceOf(desktop.CommandExitError);
    expect(await d.getCursorPosition()).toEqual({ x: WIDTH - 1, y: HEIGHT - 1 });
  });

  it('clicks, double-clicks, right- and middle-clicks, drags, scrolls and types into a page', async () => {
    await d.files.write('/tmp/events.html', EVENTS_PAGE);
    await d.open('/tmp/events.html');
    const title = (id: string) => d.getWindowTitle(id);
    const win = await until(
      async () => {
        for (const id of await d.getApplicationWindows('chromium'))
          if ((await title(id)).startsWith('events:')) return id;
        return '';
      },
      (id) => id !== '',
      60_000,
    );
    expect(win).not.toBe('');
    const g = await geometry(win);
    const [cx, cy] = [g.x + Math.floor(g.width / 2), g.y + Math.floor(g.height / 2) + 40];
    await d.leftClick(cx, cy);
    await d.doubleClick(cx, cy);
    await d.rightClick(cx, cy);
    await d.press('escape');
    await d.middleClick(cx, cy);
    await d.drag([cx - 100, cy], [cx + 100, cy + 20]);
    await d.scroll('down', 2);
    await d.scroll('up', 1);
    await d.write('q');
    await d.press(['shift', 'x']);
    await d.press('nosuchkey'); // xdotool warns and types nothing (E2B: the same binary)
    const want = [
      'click',
      'dblclick',
      'right',
      'middle',
      'drag',
      'scrolldown',
      'scrollup',
      'key-q',
      'key-shift-X',
    ];
    const seen = await until(
      () => title(win),
      (t) => want.every((e) => t.includes(e)),
    );
    for (const e of want) expect(seen).toContain(e);
    expect(seen).not.toMatch(/nosuchkey/);
  });

  it('serves the noVNC page through the port proxy, whose WebSocket speaks RFB without a password', async () => {
    await d.stream.start();
    const url = new URL(d.stream.getUrl());
    expect(url.host).toBe(d.getHost(6080));
    expect(url.pathname).toBe('/vnc.html');
    expect(() => d.stream.getAuthKey()).toThrow(/requireAuth/);
    const page = await fetch(new URL('/vnc.html', cove.url), { headers: viaGateway(6080) });
    expect(page.status).toBe(200);
    expect(await page.text()).toMatch(/noVNC/);
    const rfb = await RfbClient.open(`${cove.url.replace('http', 'ws')}/websockify`, viaGateway(6080));
    const { version, securityTypes } = await rfb.hello();
    expect(version).toBe('RFB 003.008\n');
    expect(securityTypes).toEqual([1]);
    expect(await rfb.authenticate(1)).toBe(true);
    expect(await rfb.init()).toEqual({ width: WIDTH, height: HEIGHT });
    rfb.close();
    await expect(d.stream.start()).rejects.toThrow('Stream is already running');
    await stopStream();
  });

  it('asks for the password when requireAuth is set, and streams one window when given its id', async () => {
    const [win] = await until(
      async () => {
        const found = await d.getApplicationWindows('xfce4-terminal').catch(() => []);
        if (found.length === 0) await d.launch('xfce4-terminal');
        return found;
      },
      (w) => w.length > 0,
    );
    // x11vnc -id reads the window with XShmGetImage, which fails (BadMatch) on a window that
    // reaches beyond the screen: the terminal's default size is wider than 800 px.
    await d.commands.run(`xdotool windowsize ${win} 480 320 windowmove ${win} 40 60`);
    await d.stream.start({ requireAuth: true, windowId: win });
    const key = d.stream.getAuthKey();
    expect(new URL(d.stream.getUrl({ authKey: key })).searchParams.get('password')).toBe(key);
    const wsUrl = `${cove.url.replace('http', 'ws')}/websockify`;

    const wrong = await RfbClient.open(wsUrl, viaGateway(6080));
    expect((await wrong.hello()).securityTypes).toEqual([2]);
    expect(await wrong.authenticate(2, 'not-the-key')).toBe(false);
    wrong.close();

    const right = await RfbClient.open(wsUrl, viaGateway(6080));
    expect((await right.hello()).securityTypes).toEqual([2]);
    expect(await right.authenticate(2, key)).toBe(true);
    const g = await geometry(win!);
    expect(await right.init()).toEqual({ width: g.width, height: g.height });
    right.close();
    await stopStream();
  });

  it('fails as @e2b/desktop users expect on a window or application that does not exist, and keeps working', async () => {
    await expect(d.getWindowTitle('999999999')).rejects.toBeInstanceOf(desktop.CommandExitError);
    // launch runs in the background and reports nothing (the SDK's own behaviour); no window appears.
    await d.launch('no-such-application');
    await expect(d.getApplicationWindows('no-such-application')).rejects.toBeInstanceOf(
      desktop.CommandExitError,
    );
    await d.moveMouse(10, 20);
    expect(await d.getCursorPosition()).toEqual({ x: 10, y: 20 });
    expect(decodePng(await d.screenshot()).width).toBe(WIDTH);
  });
});
