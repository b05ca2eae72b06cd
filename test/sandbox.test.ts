import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCoveError } from '../src/core/errors.ts';
import type { Config } from '../src/config/config.ts';
import type { Cove } from '../src/main.ts';
import {
  canRunSandboxes,
  exec,
  hostLeftovers,
  sh,
  startTestCove,
  stopTestCove,
  testConfig,
} from './helpers.ts';

describe.skipIf(!canRunSandboxes)('a sandbox runs commands and file operations', () => {
  let cove: Cove & { config: Config };
  let id: string;

  beforeAll(async () => {
    cove = await startTestCove();
    id = (
      await cove.manager.create({
        template: 'base',
        timeoutMs: 600_000,
        envVars: { SANDBOX_VAR: 'from-create' },
      })
    ).id;
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('streams stdout and stderr and reports the exit code', async () => {
    const r = await sh(cove.manager, id, 'echo out; echo err >&2; exit 7');
    expect(r).toMatchObject({ stdout: 'out\n', stderr: 'err\n', exitCode: 7 });
  });

  it('reports a process killed by a signal', async () => {
    const r = await sh(cove.manager, id, 'kill -9 $$');
    expect(r.exitCode).toBe(137);
    expect(r.signal).toBe('SIGKILL');
  });

  it('passes sandbox env, command env and cwd', async () => {
    const r = await exec(cove.manager, id, ['/bin/sh', '-c', 'echo $SANDBOX_VAR $CMD_VAR $(pwd) $HOME'], {
      env: { CMD_VAR: 'from-exec' },
      cwd: '/tmp',
    });
    expect(r.stdout).toBe('from-create from-exec /tmp /home/user\n');
  });

  it('runs as the template user by default, as root on request, and sudo works', async () => {
    expect((await sh(cove.manager, id, 'id -u; id -un; id -g')).stdout).toBe('1000\nuser\n1000\n');
    expect((await sh(cove.manager, id, 'id -u; echo $HOME', { user: 'root' })).stdout).toBe('0\n/root\n');
    expect((await sh(cove.manager, id, 'sudo -n id -u')).stdout).toBe('0\n');
    // root owns the template's files inside the sandbox, and user owns its home
    expect((await sh(cove.manager, id, 'stat -c %U /etc/passwd /home/user')).stdout).toBe('root\nuser\n');
    expect((await sh(cove.manager, id, 'touch /root/x && echo ok', { user: 'root' })).stdout).toBe('ok\n');
  });

  it('rejects an unknown user and an empty command', async () => {
    await expect(sh(cove.manager, id, 'true', { user: 'nosuchuser' })).rejects.toSatisfy((e) =>
      isCoveError(e, 'invalid_argument'),
    );
    await expect(exec(cove.manager, id, [])).rejects.toSatisfy((e) => isCoveError(e, 'invalid_argument'));
  });

  it('runs a command in a PTY and resizes it', async () => {
    let out = '';
    let exited!: (code: number) => void;
    const done = new Promise<number>((r) => (exited = r));
    const proc = await cove.manager.exec(
      id,
      {
        argv: ['/bin/bash', '-c', 'tty; read line; stty size; echo got:$line'],
        pty: { cols: 80, rows: 24 },
        stdin: true,
      },
      { onData: (_s, d) => (out += d.toString()), onExit: (r) => exited(r.exitCode) },
    );
    await proc.resize(100, 40);
    await proc.write(Buffer.from('hello\n'));
    expect(await done).toBe(0);
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    expect(out).toContain('40 100');
    expect(out).toContain('got:hello');
  });

  it('does every file operation as the given user', async () => {
    const agent = cove.manager.agent(id);
    const user = { uid: 1000, gid: 1000 };
    const written = await agent.writeFile('/home/user/dir/a.txt', Buffer.from('hello file'), user);
    expect(written).toMatchObject({ name: 'a.txt', type: 'file', size: 10, uid: 1000 });
    expect(
      (await sh(cove.manager, id, 'cat /home/user/dir/a.txt; echo; stat -c %U /home/user/dir')).stdout,
    ).toBe('hello file\nuser\n');

    const chunks: Buffer[] = [];
    for await (const c of agent.readFile('/home/user/dir/a.txt', user)) chunks.push(c);
    expect(Buffer.concat(chunks).toString()).toBe('hello file');

    expect(await agent.mkdir('/home/user/dir/x/y', user)).toBe(true);
    expect(await agent.mkdir('/home/user/dir/x/y', user)).toBe(false);
    const listed = await agent.list('/home/user/dir', 2, user);
    expect(listed.map((f) => f.path).sort()).toEqual([
      '/home/user/dir/a.txt',
      '/home/user/dir/x',
      '/home/user/dir/x/y',
    ]);
    expect((await agent.rename('/home/user/dir/a.txt', '/home/user/dir/b.txt', user)).name).toBe('b.txt');
    expect((await agent.stat('/home/user/dir/b.txt', user)).size).toBe(10);
    await agent.remove('/home/user/dir', user);
    await expect(agent.stat('/home/user/dir', user)).rejects.toSatisfy((e) => isCoveError(e, 'not_found'));
    await expect(agent.writeFile('/root/secret', Buffer.from('x'), user)).rejects.toSatisfy((e) =>
      isCoveError(e, 'permission_denied'),
    );
  });

  it('streams a large file both ways', async () => {
    const agent = cove.manager.agent(id);
    const user = { uid: 1000, gid: 1000 };
    const big = Buffer.alloc(8 << 20);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    await agent.writeFile('/tmp/big.bin', big, user);
    const chunks: Buffer[] = [];
    for await (const c of agent.readFile('/tmp/big.bin', user)) chunks.push(c);
    expect(Buffer.concat(chunks).equals(big)).toBe(true);
    expect((await sh(cove.manager, id, 'sha256sum < /tmp/big.bin | cut -c1-16')).stdout.trim()).toHaveLength(
      16,
    );
  });

  it('watches a directory recursively', async () => {
    const agent = cove.manager.agent(id);
    const user = { uid: 1000, gid: 1000 };
    await agent.mkdir('/home/user/watched', user);
    const watch = await agent.watch('/home/user/watched', { recursive: true }, user);
    await sh(
      cove.manager,
      id,
      'mkdir /home/user/watched/sub && sleep 0.2 && echo hi > /home/user/watched/sub/f.txt',
    );
    const seen: string[] = [];
    for await (const event of watch.events) {
      seen.push(`${event.type} ${event.path}`);
      if (seen.some((s) => s.includes('f.txt') && s.startsWith('write'))) break;
    }
    await watch.close();
    expect(seen.some((s) => s.startsWith('create') && s.includes('sub'))).toBe(true);
    expect(seen.some((s) => s.includes('f.txt'))).toBe(true);
  });

  it('gives clear errors for bad input and keeps state intact', async () => {
    const m = cove.manager;
    await expect(m.create({ template: 'no-such-template', timeoutMs: 1000 })).rejects.toSatisfy((e) =>
      isCoveError(e, 'not_found'),
    );
    await expect(m.create({ template: 'Bad Name!', timeoutMs: 1000 })).rejects.toSatisfy((e) =>
      isCoveError(e, 'invalid_argument'),
    );
    await expect(m.create({ template: 'base', timeoutMs: -5 })).rejects.toSatisfy((e) =>
      isCoveError(e, 'invalid_argument'),
    );
    expect(() => m.get('aaaaaaaaaaaaaaaaaaaa')).toThrow(/not found/);
    await expect(m.kill('aaaaaaaaaaaaaaaaaaaa')).rejects.toSatisfy((e) => isCoveError(e, 'not_found'));
    expect(m.list().map((s) => s.id)).toEqual([id]);
    expect((await sh(m, id, 'echo still-here')).stdout).toBe('still-here\n');
  });

  it('refuses a second Cove on the same instance, which would take its sandboxes for orphans', async () => {
    await expect(startTestCove(testConfig())).rejects.toSatisfy(
      (e) => isCoveError(e, 'conflict') && /already serves instance/.test((e as Error).message),
    );
    expect((await sh(cove.manager, id, 'echo still-mine')).stdout).toBe('still-mine\n');
  });

  it('kills a sandbox and leaves nothing behind', async () => {
    const m = cove.manager;
    const other = await m.create({ template: 'base', timeoutMs: 60_000 });
    await sh(m, other.id, 'sleep 1000 & sleep 1000 & echo started');
    await m.kill(other.id);
    expect(() => m.get(other.id)).toThrow(/not found/);
    const left = hostLeftovers(cove.config.instance, cove.config.home);
    expect(left.filter((l) => l.includes(other.id))).toEqual([]);
  });
});
