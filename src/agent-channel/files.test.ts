import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectAgent } from './client.ts';
import { NOBODY, ROOT, TOKEN, buildAgent, skipReason, startAgent, type RunningAgent } from './test-agent.ts';
import type { AgentClient, WatchEvent } from './types.ts';

const skip = skipReason();

describe.skipIf(skip)('cove-agent files', () => {
  let agent: RunningAgent;
  let c: AgentClient;
  let d: string;

  beforeAll(async () => {
    buildAgent();
    agent = startAgent();
    c = await connectAgent(agent.socket, TOKEN);
    d = join(agent.dir, 'fs');
    mkdirSync(d);
    chmodSync(agent.dir, 0o755);
  });
  afterAll(async () => {
    c?.close();
    await agent?.stop();
  });

  it('stats files, directories and symlinks', async () => {
    writeFileSync(join(d, 'a.txt'), 'hello');
    symlinkSync(join(d, 'a.txt'), join(d, 'link'));
    const f = await c.stat(join(d, 'a.txt'), ROOT);
    expect(f).toMatchObject({
      name: 'a.txt',
      path: join(d, 'a.txt'),
      type: 'file',
      size: 5,
      mode: 0o644,
      uid: 0,
    });
    expect(Math.abs(f.mtimeMs - statSync(join(d, 'a.txt')).mtimeMs)).toBeLessThan(1);
    expect(await c.stat(d, ROOT)).toMatchObject({ type: 'dir', name: 'fs' });
    expect(await c.stat(join(d, 'link'), ROOT)).toMatchObject({
      type: 'symlink',
      targetType: 'file',
      symlinkTarget: join(d, 'a.txt'),
    });
    await expect(c.stat(join(d, 'missing'), ROOT)).rejects.toMatchObject({ code: 'not_found' });
    await expect(c.stat('relative/path', ROOT)).rejects.toMatchObject({ code: 'invalid_argument' });
  });

  it('lists with depth 1 and 2 in depth-first sorted order', async () => {
    const base = join(d, 'tree');
    mkdirSync(join(base, 'b/sub'), { recursive: true });
    writeFileSync(join(base, 'a'), '');
    writeFileSync(join(base, 'b/x'), '');
    writeFileSync(join(base, 'b/sub/deep'), '');
    writeFileSync(join(base, 'c'), '');
    const rel = (xs: { path: string }[]) => xs.map((x) => x.path.slice(base.length + 1));
    expect(rel(await c.list(base, 1, ROOT))).toEqual(['a', 'b', 'c']);
    expect(rel(await c.list(base, 2, ROOT))).toEqual(['a', 'b', 'b/sub', 'b/x', 'c']);
    expect((await c.list(base, 1, ROOT))[1]).toMatchObject({ name: 'b', type: 'dir' });
    await expect(c.list(join(base, 'a'), 1, ROOT)).rejects.toMatchObject({ code: 'invalid_argument' });
  });

  it('makes directories with parents, renames and removes recursively', async () => {
    const p = join(d, 'm/n/o');
    expect(await c.mkdir(p, ROOT)).toBe(true);
    expect(await c.mkdir(p, ROOT)).toBe(false);
    writeFileSync(join(p, 'f'), 'x');
    const moved = await c.rename(join(d, 'm'), join(d, 'new/place/m2'), ROOT);
    expect(moved).toMatchObject({ name: 'm2', path: join(d, 'new/place/m2'), type: 'dir' });
    expect(readFileSync(join(d, 'new/place/m2/n/o/f'), 'utf8')).toBe('x');
    await c.remove(join(d, 'new'), ROOT);
    await expect(c.stat(join(d, 'new'), ROOT)).rejects.toMatchObject({ code: 'not_found' });
    await expect(c.remove(join(d, 'new'), ROOT)).rejects.toMatchObject({ code: 'not_found' });
    await expect(c.rename(join(d, 'nope'), join(d, 'x'), ROOT)).rejects.toMatchObject({ code: 'not_found' });
  });

  it('writes and reads back a multi-MiB file', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 123);
    const p = join(d, 'big/dir/blob.bin');
    const info = await c.writeFile(p, data, ROOT);
    expect(info).toMatchObject({ path: p, size: data.length, type: 'file' });
    const chunks: Buffer[] = [];
    for await (const chunk of c.readFile(p, ROOT)) {
      expect(chunk.length).toBeLessThanOrEqual(64 * 1024);
      chunks.push(chunk);
    }
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    async function* gen() {
      for (let i = 0; i < 10; i++) yield await Promise.resolve(Buffer.from(`line ${i}\n`));
    }
    await c.writeFile(join(d, 'gen.txt'), gen(), ROOT);
    expect(readFileSync(join(d, 'gen.txt'), 'utf8').split('\n')).toHaveLength(11);
    // A consumer that stops early cancels the read; the connection stays usable.
    const it = c.readFile(p, ROOT)[Symbol.asyncIterator]();
    expect((await it.next()).done).toBe(false);
    await it.return?.();
    await c.ping();
  });

  it('creates files and parents as the caller, and enforces their permissions', async () => {
    mkdirSync(join(d, 'pub'));
    chmodSync(join(d, 'pub'), 0o777);
    const info = await c.writeFile(join(d, 'pub/u/n.txt'), Buffer.from('x'), NOBODY);
    expect(info).toMatchObject({ uid: 65534, gid: 65534, mode: 0o644 });
    expect(statSync(join(d, 'pub/u')).uid).toBe(65534);
    writeFileSync(join(d, 'secret'), 's');
    chmodSync(join(d, 'secret'), 0o600);
    await expect(c.writeFile(join(d, 'nobody.txt'), Buffer.from('x'), NOBODY)).rejects.toMatchObject({
      code: 'permission_denied',
    });
    const read = () => c.readFile(join(d, 'secret'), NOBODY)[Symbol.asyncIterator]().next();
    await expect(read()).rejects.toMatchObject({ code: 'permission_denied' });
    await expect(c.mkdir(join(d, 'nope'), NOBODY)).rejects.toMatchObject({ code: 'permission_denied' });
    const missing = () => c.readFile(join(d, 'missing'), ROOT)[Symbol.asyncIterator]().next();
    await expect(missing()).rejects.toMatchObject({ code: 'not_found' });
  });

  it('elevated: reaches like root, creates and takes over files as the user', async () => {
    const NOBODY_E = { ...NOBODY, elevated: true };
    mkdirSync(join(d, 'rootonly'), { mode: 0o700 });
    const info = await c.writeFile(join(d, 'rootonly/a/b.txt'), Buffer.from('x'), NOBODY_E);
    expect(info).toMatchObject({ uid: 65534, gid: 65534, mode: 0o644 });
    expect(statSync(join(d, 'rootonly/a')).uid).toBe(65534);
    writeFileSync(join(d, 'rootonly/theirs'), 'root');
    chmodSync(join(d, 'rootonly/theirs'), 0o600);
    expect(await c.writeFile(join(d, 'rootonly/theirs'), Buffer.from('y'), NOBODY_E)).toMatchObject({
      uid: 65534,
    });
    expect(await c.stat(join(d, 'rootonly/theirs'), NOBODY_E)).toMatchObject({ size: 1 });
    expect(await c.mkdir(join(d, 'rootonly/dir'), NOBODY_E)).toBe(true);
    expect(statSync(join(d, 'rootonly/dir')).uid).toBe(65534);
    // Without the flag the same user is refused, and the agent is back to itself in between.
    await expect(c.stat(join(d, 'rootonly/theirs'), NOBODY)).rejects.toMatchObject({
      code: 'permission_denied',
    });
    await c.remove(join(d, 'rootonly'), NOBODY_E);
  });

  it('replaces, reports and clears E2B metadata (user.e2b.* xattrs)', async () => {
    const p = join(d, 'meta.txt');
    await c.writeFile(p, Buffer.from('m'), ROOT);
    expect((await c.stat(p, ROOT)).metadata).toBeUndefined();
    const set = await c.setMetadata(p, { author: 'ann', empty: '' }, ROOT);
    expect(set.metadata).toEqual({ author: 'ann', empty: '' });
    expect((await c.setMetadata(p, { purpose: 'x' }, ROOT)).metadata).toEqual({ purpose: 'x' });
    symlinkSync(p, join(d, 'meta-link'));
    const listed = await c.list(d, 1, ROOT);
    expect(listed.find((e) => e.name === 'meta.txt')?.metadata).toEqual({ purpose: 'x' });
    expect(listed.find((e) => e.name === 'meta-link')?.metadata).toEqual({ purpose: 'x' });
    // O_TRUNC keeps xattrs: only an explicit replacement clears them.
    expect((await c.writeFile(p, Buffer.from('n'), ROOT)).metadata).toEqual({ purpose: 'x' });
    expect((await c.setMetadata(p, {}, ROOT)).metadata).toBeUndefined();
    const bads: Record<string, string>[] = [
      { '': 'v' },
      { k: 'a\nb' },
      { ['k'.repeat(247)]: 'v' },
      { k: 'v'.repeat(4096) },
    ];
    for (const bad of bads) {
      await expect(c.setMetadata(p, bad, ROOT)).rejects.toMatchObject({ code: 'invalid_argument' });
    }
    await expect(c.setMetadata(join(d, 'nope'), { a: 'b' }, ROOT)).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('watches recursively, including directories created after it started', async () => {
    const base = join(d, 'watched');
    mkdirSync(base);
    const w = await c.watch(base, { recursive: true }, ROOT);
    const seen: WatchEvent[] = [];
    const collecting = (async () => {
      for await (const e of w.events) seen.push(e);
    })();
    mkdirSync(join(base, 'later'));
    writeFileSync(join(base, 'later/f.txt'), 'one');
    await new Promise((r) => setTimeout(r, 100));
    writeFileSync(join(base, 'later/f.txt'), 'two');
    await c.remove(join(base, 'later/f.txt'), ROOT);
    const want = [
      { type: 'create', path: 'later' },
      { type: 'create', path: 'later/f.txt' },
      { type: 'write', path: 'later/f.txt' },
      { type: 'remove', path: 'later/f.txt' },
    ];
    const deadline = Date.now() + 3000;
    while (
      !want.every((x) => seen.some((s) => s.type === x.type && s.path === x.path)) &&
      Date.now() < deadline
    ) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await w.close();
    await collecting;
    for (const x of want) expect(seen).toContainEqual(x);
    await expect(c.watch(join(d, 'no-such'), { recursive: false }, ROOT)).rejects.toMatchObject({
      code: 'not_found',
    });
  });
});
