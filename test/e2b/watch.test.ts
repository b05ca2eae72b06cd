import { create } from '@bufbuild/protobuf';
import { Code, ConnectError, createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.ts';
import { EventType, Filesystem, WatchDirRequestSchema } from '../../src/gen/filesystem/filesystem_pb.js';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;
type FsEvent = { name: string; type: string; entry?: { name: string; path: string; type?: string } };

/** The key the server accepts: the one it minted when it has that notion, else any. */
const apiKeyOf = (cove: Cove): string =>
  'apiKey' in cove && typeof cove.apiKey === 'string' ? cove.apiKey : 'e2b_test';

/** Resolves when `pred` holds for the events seen so far (checked as each arrives). */
function waitFor(events: FsEvent[], pred: (seen: FsEvent[]) => boolean, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + ms;
    const poll = setInterval(() => {
      if (pred(events)) {
        clearInterval(poll);
        resolve();
      } else if (Date.now() > deadline) {
        clearInterval(poll);
        reject(new Error(`timed out; saw ${JSON.stringify(events.map((e) => [e.type, e.name]))}`));
      }
    }, 10);
  });
}

/**
 * WatchDir and the polling watchers (spec 3.4, 4.3): through the SDK's `files.watchDir`, and on
 * the wire for what the SDK does not reach (keepalives, deadlines, CreateWatcher & co).
 */
describe.skipIf(!canRunSandboxes)('e2b watchDir', () => {
  let cove: Cove & { config: Config };
  let e2b: E2b;
  let sbx: InstanceType<E2b['Sandbox']>;
  let rpc: Client<typeof Filesystem>;

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = apiKeyOf(cove);
    e2b = await loadE2b();
    sbx = await e2b.Sandbox.create('base', { secure: true });
    const token = cove.manager.get(sbx.sandboxId).envdAccessToken!;
    const transport = createConnectTransport({
      baseUrl: cove.url,
      httpVersion: '1.1',
      interceptors: [
        (next) => (req) => {
          req.header.set('E2b-Sandbox-Id', sbx.sandboxId);
          req.header.set('E2b-Sandbox-Port', '49983');
          req.header.set('X-Access-Token', token);
          return next(req);
        },
      ],
    });
    rpc = createClient(Filesystem, transport);
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('reports a write, then ends on stop()', async () => {
    await sbx.files.write('w1/file.txt', 'one');
    const events: FsEvent[] = [];
    let exited: unknown = 'not yet';
    const handle = await sbx.files.watchDir('w1', (e) => void events.push(e), {
      onExit: (err) => {
        exited = err;
      },
    });
    await sbx.files.write('w1/file.txt', 'two');
    await waitFor(events, (s) => s.some((e) => e.type === 'write' && e.name === 'file.txt'));
    await handle.stop();
    // The SDK aborts its own request: onExit comes once, from the client side.
    await waitFor(events, () => exited !== 'not yet');
  });

  it('watches recursively, including a directory created after it started', async () => {
    await sbx.files.makeDir('w2/existing');
    const events: FsEvent[] = [];
    const handle = await sbx.files.watchDir('w2', (e) => void events.push(e), { recursive: true });
    await sbx.files.write('w2/existing/a.txt', 'a');
    await waitFor(events, (s) => s.some((e) => e.type === 'write' && e.name === 'existing/a.txt'));
    await sbx.files.makeDir('w2/later');
    await waitFor(events, (s) => s.some((e) => e.type === 'create' && e.name === 'later'));
    await sbx.files.write('w2/later/b.txt', 'b');
    await waitFor(events, (s) => s.some((e) => e.type === 'write' && e.name === 'later/b.txt'));
    await sbx.files.rename('w2/later/b.txt', 'w2/later/c.txt');
    await sbx.files.remove('w2/later/c.txt');
    await waitFor(events, (s) => s.some((e) => e.type === 'remove' && e.name === 'later/c.txt'));
    const forB = events.filter((e) => e.name === 'later/b.txt').map((e) => e.type);
    expect(forB.slice(0, 2)).toEqual(['create', 'write']);
    expect(forB).toContain('rename');
    await handle.stop();
  });

  it('attaches entries to create, write and chmod only', async () => {
    await sbx.files.makeDir('w3');
    const events: FsEvent[] = [];
    const handle = await sbx.files.watchDir('w3', (e) => void events.push(e), { includeEntry: true });
    await sbx.files.write('w3/e.txt', 'entry');
    // One step at a time: an entry is only attached while the file still exists.
    await sbx.commands.run('chmod 600 ~/w3/e.txt');
    await waitFor(events, (s) => s.some((e) => e.type === 'chmod'));
    await sbx.files.remove('w3/e.txt');
    await waitFor(events, (s) => s.some((e) => e.type === 'remove'));
    const write = events.find((e) => e.type === 'write')!;
    expect(write.entry).toMatchObject({ name: 'e.txt', path: '/home/user/w3/e.txt', type: 'file' });
    expect(events.find((e) => e.type === 'create')?.entry?.name).toBe('e.txt');
    expect(events.find((e) => e.type === 'chmod')?.entry?.name).toBe('e.txt');
    expect(events.find((e) => e.type === 'remove')?.entry).toBeUndefined();
    await handle.stop();
  });

  it('refuses what it cannot watch, as envd does', async () => {
    await expect(sbx.files.watchDir('no-such-dir', () => {})).rejects.toBeInstanceOf(e2b.FileNotFoundError);
    await sbx.files.write('w4.txt', 'file');
    await expect(sbx.files.watchDir('w4.txt', () => {})).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    await expect(sbx.files.watchDir('bad\0dir', () => {})).rejects.toBeInstanceOf(e2b.InvalidArgumentError);
    const ok = await sbx.files.watchDir('/', () => {}, { allowNetworkMounts: true });
    await ok.stop();
  });

  it('ends with an error when the watched directory goes, and at its timeout', async () => {
    await sbx.files.makeDir('w5');
    let gone: unknown = 'not yet';
    await sbx.files.watchDir('w5', () => {}, {
      onExit: (err) => {
        gone = err;
      },
    });
    await sbx.files.remove('w5');
    await waitFor([], () => gone !== 'not yet');
    expect(gone).toBeInstanceOf(Error);

    let timedOut: unknown = 'not yet';
    const started = Date.now();
    await sbx.files.watchDir('/tmp', () => {}, {
      timeoutMs: 1000,
      onExit: (err) => {
        timedOut = err;
      },
    });
    await waitFor([], () => timedOut !== 'not yet', 5000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it('gives a stopped watch back to the agent (it serves 64 at a time)', async () => {
    for (let i = 0; i < 70; i++) await (await sbx.files.watchDir('/tmp', () => {})).stop();
    const last = await sbx.files.watchDir('/tmp', () => {});
    await last.stop();
  });

  it('sends start first, keepalives while idle, and stops at Connect-Timeout-Ms', async () => {
    const seen: string[] = [];
    const stream = rpc.watchDir(create(WatchDirRequestSchema, { path: '/tmp' }), {
      headers: { 'Keepalive-Ping-Interval': '1' },
      timeoutMs: 2500,
    });
    const error = await (async () => {
      for await (const r of stream) seen.push(r.event.case ?? 'empty');
    })().catch((e: unknown) => ConnectError.from(e));
    expect(seen[0]).toBe('start');
    expect(seen.filter((c) => c === 'keepalive').length).toBeGreaterThanOrEqual(1);
    expect(error?.code).toBe(Code.DeadlineExceeded);
  });

  it('serves the polling watchers of the Python SDK', async () => {
    await sbx.files.makeDir('w6');
    const { watcherId } = await rpc.createWatcher({ path: 'w6', recursive: true, includeEntry: true });
    expect(watcherId).toMatch(/^w[0-9a-f]+$/);
    const got: { name: string; type: EventType; entry?: unknown }[] = [];
    const poll = async (name: string, type: EventType) => {
      const deadline = Date.now() + 10_000;
      while (!got.some((e) => e.name === name && e.type === type) && Date.now() < deadline) {
        got.push(...(await rpc.getWatcherEvents({ watcherId })).events);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    // As E2B's own test: the new directory is watched once its CREATE is seen, not before.
    await sbx.files.makeDir('w6/sub');
    await poll('sub', EventType.CREATE);
    await sbx.files.write('w6/sub/p.txt', 'poll');
    await poll('sub/p.txt', EventType.WRITE);
    expect(got.find((e) => e.name === 'sub')?.type).toBe(EventType.CREATE);
    expect(got.find((e) => e.name === 'sub/p.txt' && e.type === EventType.WRITE)?.entry).toBeDefined();
    expect((await rpc.getWatcherEvents({ watcherId })).events).toEqual([]);
    await rpc.removeWatcher({ watcherId });
    const gone = await rpc.getWatcherEvents({ watcherId }).catch((e: unknown) => ConnectError.from(e));
    expect(gone).toMatchObject({ code: Code.NotFound });
    await expect(rpc.createWatcher({ path: 'no-such-dir' })).rejects.toMatchObject({ code: Code.NotFound });
  });
});
