import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config/config.ts';
import type { Cove } from '../../src/main.ts';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const latest = await import('e2b');
type Sdk = typeof latest;
type Sandbox = InstanceType<Sdk['Sandbox']>;
type SandboxOpts = import('e2b').SandboxOpts;

/**
 * The control plane (spec section 2) through the unmodified SDK, in both wire versions:
 * e2b 2.51 creates and connects through /v2, 2.50 through the v1 endpoints. The SDK reads
 * E2B_API_URL, E2B_SANDBOX_URL and E2B_API_KEY at every call, so they are set in beforeAll.
 */
const sdks: Array<[string, Sdk]> = [
  ['e2b 2.51 (v2 create and connect)', latest],
  ['e2b 2.50 (v1 create and connect)', (await import('e2b-legacy')) as unknown as Sdk],
];

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.skipIf(!canRunSandboxes)('the E2B control plane', () => {
  let cove: Cove & { config: Config; apiKey: string };

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  describe.each(sdks)('%s', (_name, sdk) => {
    const { Sandbox, AuthenticationError, SandboxNotFoundError, SandboxError, TimeoutError } = sdk;
    /** Sandboxes of one test, told apart from every other test's by their metadata. */
    async function create(tag: string, opts: SandboxOpts = {}): Promise<Sandbox> {
      return Sandbox.create('base', { ...opts, metadata: { tag, ...opts.metadata } });
    }

    it('creates with metadata, envs and a timeout; getInfo tells them back', async () => {
      const tag = randomUUID();
      const before = Date.now();
      const sbx = await create(tag, {
        metadata: { 'a b': 'c&d=e' },
        envs: { FOO: 'bar baz' },
        timeoutMs: 120_000,
      });
      try {
        const info = await sbx.getInfo();
        expect(info).toMatchObject({
          sandboxId: sbx.sandboxId,
          templateId: 'base',
          name: 'base',
          metadata: { tag, 'a b': 'c&d=e' },
          state: 'running',
          envdVersion: '0.6.13',
        });
        expect(info.cpuCount).toBeGreaterThan(0);
        expect(info.memoryMB).toBeGreaterThan(0);
        expect(info.startedAt.getTime()).toBeGreaterThanOrEqual(before - 1000);
        expect(info.endAt.getTime() - info.startedAt.getTime()).toBe(120_000);
        expect((await Sandbox.getInfo(sbx.sandboxId)).sandboxId).toBe(sbx.sandboxId);
        expect((await sbx.commands.run('echo "$FOO"')).stdout).toBe('bar baz\n');
      } finally {
        await sbx.kill();
      }
    });

    it('connect extends the end time, never shortens it, and keeps the access token', async () => {
      const sbx = await create(randomUUID(), { timeoutMs: 300_000 });
      try {
        const before = await sbx.getInfo();
        const again = await Sandbox.connect(sbx.sandboxId, { timeoutMs: 10_000 });
        expect((await sbx.getInfo()).endAt.getTime()).toBe(before.endAt.getTime());
        expect(await again.isRunning()).toBe(true);
        // The same token: the signed URL of one file is the same from both handles.
        expect(await again.downloadUrl('/tmp/x')).toBe(await sbx.downloadUrl('/tmp/x'));
        expect(await sbx.downloadUrl('/tmp/x')).toMatch(/signature=v1_/);
        await again.commands.run('true'); // envd accepts the reconnected handle's token

        await sbx.connect({ timeoutMs: 600_000 });
        const extended = (await sbx.getInfo()).endAt.getTime();
        expect(extended).toBeGreaterThan(before.endAt.getTime());
        expect(extended).toBeGreaterThanOrEqual(Date.now() + 590_000);
      } finally {
        await sbx.kill();
      }
    });

    it('lists by metadata and state, pages at limit 1, in either order', async () => {
      const tag = randomUUID();
      const first = await create(tag);
      await wait(5); // distinct start times, so that the order is the creation order
      const second = await create(tag);
      try {
        const ids = async (opts: Parameters<Sdk['Sandbox']['list']>[0]) =>
          (await Sandbox.list(opts).nextItems()).map((s) => s.sandboxId);
        expect(await ids({ query: { metadata: { tag } } })).toEqual([second.sandboxId, first.sandboxId]);
        expect(await ids({ query: { metadata: { tag } }, order: 'asc' })).toEqual([
          first.sandboxId,
          second.sandboxId,
        ]);
        expect(await ids({ query: { metadata: { tag }, state: ['paused'] } })).toEqual([]);
        expect(await ids({ query: { metadata: { tag, other: 'x' } } })).toEqual([]);
        expect(await ids({ query: { metadata: { tag }, template: 'unknown-template' } })).toEqual([]);
        const startedAt = (await second.getInfo()).startedAt;
        expect(await ids({ query: { metadata: { tag }, startedAfter: startedAt } })).toEqual([
          second.sandboxId,
        ]);

        const pages = Sandbox.list({ limit: 1, query: { metadata: { tag }, state: ['running'] } });
        const page1 = await pages.nextItems();
        expect(page1.map((s) => s.sandboxId)).toEqual([second.sandboxId]);
        expect(page1[0]).toMatchObject({ state: 'running', templateId: 'base', metadata: { tag } });
        expect(pages.hasNext).toBe(true);
        expect(pages.nextToken).toBeDefined();
        expect((await pages.nextItems()).map((s) => s.sandboxId)).toEqual([first.sandboxId]);
        expect(pages.hasNext).toBe(false);
        expect(pages.nextToken).toBeUndefined();
        await expect(Sandbox.list({ nextToken: 'not-a-token' }).nextItems()).rejects.toThrow(
          /Invalid next token/,
        );
      } finally {
        await first.kill();
        await second.kill();
      }
    });

    it('kill is true once, then false; a killed sandbox is not running, listed or found', async () => {
      const tag = randomUUID();
      const sbx = await create(tag);
      expect(await sbx.isRunning()).toBe(true);
      expect(await sbx.kill()).toBe(true);
      expect(await sbx.isRunning()).toBe(false);
      expect(await Sandbox.kill(sbx.sandboxId)).toBe(false);
      expect(await Sandbox.kill('nonexistingsandbox')).toBe(false);
      expect(await Sandbox.list({ query: { metadata: { tag } } }).nextItems()).toEqual([]);
      await expect(Sandbox.getInfo(sbx.sandboxId)).rejects.toThrow(SandboxNotFoundError);
      await expect(Sandbox.connect(sbx.sandboxId)).rejects.toThrow(SandboxNotFoundError);
      await expect(Sandbox.setTimeout(sbx.sandboxId, 10_000)).rejects.toThrow(SandboxNotFoundError);
      await expect(Sandbox.getMetrics(sbx.sandboxId)).rejects.toThrow(SandboxNotFoundError);
    });

    it('setTimeout may shorten: the sandbox is gone once it passes', async () => {
      const sbx = await create(randomUUID());
      await sbx.setTimeout(2_000);
      const { endAt } = await sbx.getInfo();
      expect(endAt.getTime()).toBeLessThanOrEqual(Date.now() + 2_000);
      await wait(3_000);
      expect(await sbx.isRunning()).toBe(false);
      expect(await Sandbox.kill(sbx.sandboxId)).toBe(false);
    });

    it('a sandbox that times out cuts its streams in flight, as the SDK expects of a kill', async () => {
      const sbx = await create(randomUUID());
      const handle = await sbx.commands.run('sleep 60', { background: true });
      await sbx.setTimeout(1_000);
      const err = await handle.wait().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TimeoutError);
      expect(String(err)).toMatch(/killed or reached its end of life/);
    });

    it('getMetrics returns cpu, memory and disk samples within the window asked for', async () => {
      const sbx = await create(randomUUID());
      try {
        const start = new Date(Date.now() - 1000);
        await sbx.commands.run('head -c 1000000 /dev/urandom > /tmp/blob');
        const metrics = await sbx.getMetrics();
        expect(metrics.length).toBeGreaterThan(0);
        const m = metrics.at(-1)!;
        expect(m.cpuCount).toBeGreaterThan(0);
        expect(m.cpuUsedPct).toBeGreaterThanOrEqual(0);
        expect(m.memUsed).toBeGreaterThan(0);
        expect(m.memTotal).toBeGreaterThanOrEqual(m.memUsed);
        expect(m.diskTotal).toBeGreaterThan(0);
        expect(m.timestamp).toBeInstanceOf(Date);
        const end = new Date(Date.now() + 1000);
        for (const s of await sbx.getMetrics({ start, end })) {
          expect(s.timestamp.getTime()).toBeGreaterThanOrEqual(start.getTime() - 1000);
          expect(s.timestamp.getTime()).toBeLessThanOrEqual(end.getTime() + 1000);
        }
        const hourAgo = new Date(Date.now() - 3600_000);
        expect(await sbx.getMetrics({ start: hourAgo, end: new Date(hourAgo.getTime() + 60_000) })).toEqual(
          [],
        );
      } finally {
        await sbx.kill();
      }
    });

    it('a secure sandbox has an access token; 2.50 without `secure` has none', async () => {
      const secure = await create(randomUUID(), { secure: true });
      try {
        expect(await secure.uploadUrl('/tmp/x')).toMatch(/signature=v1_/);
      } finally {
        await secure.kill();
      }
      if (_name.includes('2.50')) {
        const open = await create(randomUUID(), { secure: false });
        try {
          expect(await open.uploadUrl('/tmp/x')).not.toMatch(/signature=/);
          expect(await open.isRunning()).toBe(true);
        } finally {
          await open.kill();
        }
      }
    });

    it('rejects a wrong API key, unknown ids and bad timeouts with the SDK’s errors', async () => {
      const wrongKey = { apiKey: `e2b_${'0'.repeat(40)}` };
      await expect(Sandbox.create('base', wrongKey)).rejects.toThrow(AuthenticationError);
      await expect(Sandbox.list(wrongKey).nextItems()).rejects.toThrow(AuthenticationError);
      await expect(Sandbox.kill('nonexistingsandbox', wrongKey)).rejects.toThrow(AuthenticationError);
      await expect(Sandbox.getInfo('aaaaaaaaaaaaaaaaaaaa')).rejects.toThrow(SandboxNotFoundError);
      await expect(Sandbox.connect('aaaaaaaaaaaaaaaaaaaa')).rejects.toThrow(SandboxNotFoundError);
      await expect(Sandbox.create('base', { timeoutMs: -5_000 })).rejects.toThrow(
        /400: Timeout must be greater than 0/,
      );
      await expect(Sandbox.create('base', { timeoutMs: 25 * 3600_000 })).rejects.toThrow(SandboxError);
      await expect(Sandbox.create('no-such-template')).rejects.toThrow(/404/);
      await expect(Sandbox.create('base', { network: { denyOut: ['10.0.0.300/8'] } })).rejects.toThrow(
        /400: .*not a valid IPv4 address or CIDR/,
      );
      // An MCP server Cove's gateway cannot run is refused before any sandbox is made.
      await expect(Sandbox.create('base', { mcp: { none: {} } as never })).rejects.toThrow(
        /400: Failed to start MCP gateway: unknown MCP server "none"/,
      );
      expect(cove.manager.list()).toEqual([]); // no refused create left anything behind
    });
  });
});
