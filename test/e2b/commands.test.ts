import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

/**
 * envd's process service through the unmodified `e2b` SDK (spec 3.2, 3.4, 4.1): what
 * `sandbox.commands` does against Cove. The SDK reads E2B_* when a sandbox is created, so
 * the variables are set before it is imported.
 */
describe.skipIf(!canRunSandboxes)('e2b commands', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let sandbox: InstanceType<E2b['Sandbox']>;

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
    sandbox = await e2b.Sandbox.create('base', { envs: { SANDBOX_VAR: 'sandbox-wide' } });
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('runs a command: stdout, stderr, callbacks and exit code 0', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const r = await sandbox.commands.run('echo "Hello, World!"; echo oops >&2', {
      onStdout: (d) => void out.push(d),
      onStderr: (d) => void err.push(d),
    });
    expect(r).toMatchObject({ exitCode: 0, stdout: 'Hello, World!\n', stderr: 'oops\n' });
    expect(out.join('')).toBe('Hello, World!\n');
    expect(err.join('')).toBe('oops\n');
  });

  it('turns a non-zero exit into CommandExitError with Go wording', async () => {
    const err = (await sandbox.commands.run('echo partial; exit 3').catch((e: unknown) => e)) as InstanceType<
      E2b['CommandExitError']
    >;
    expect(err).toBeInstanceOf(e2b.CommandExitError);
    expect(err).toMatchObject({ exitCode: 3, stdout: 'partial\n', error: 'exit status 3' });
    expect(err.message).toBe('exit status 3');
  });

  it('passes sandbox-wide and per-command env vars, and the latter do not leak', async () => {
    const r = await sandbox.commands.run('echo $SANDBOX_VAR $FOO', { envs: { FOO: 'bar' } });
    expect(r.stdout).toBe('sandbox-wide bar\n');
    expect((await sandbox.commands.run('echo "[$FOO]"')).stdout).toBe('[]\n');
    // request envs win over the sandbox's
    expect((await sandbox.commands.run('echo $SANDBOX_VAR', { envs: { SANDBOX_VAR: 'x' } })).stdout).toBe(
      'x\n',
    );
  });

  it('runs in the requested cwd; a missing one is InvalidArgumentError', async () => {
    expect((await sandbox.commands.run('pwd', { cwd: '/tmp' })).stdout).toBe('/tmp\n');
    expect((await sandbox.commands.run('pwd')).stdout).toBe('/home/user\n');
    expect((await sandbox.commands.run('pwd', { cwd: '~' })).stdout).toBe('/home/user\n');
    await sandbox.commands.run('mkdir -p /home/user/sub');
    expect((await sandbox.commands.run('pwd', { cwd: 'sub' })).stdout).toBe('/home/user/sub\n');
    const err = await sandbox.commands.run('pwd', { cwd: '/no/such/dir' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(e2b.InvalidArgumentError);
    expect((err as Error).message).toContain("cwd '/no/such/dir' does not exist");
  });

  it('runs as the template user by default and as root on request', async () => {
    expect((await sandbox.commands.run('whoami; echo $HOME $USER')).stdout).toBe('user\n/home/user user\n');
    expect((await sandbox.commands.run('whoami; echo $HOME', { user: 'root' })).stdout).toBe('root\n/root\n');
    await expect(sandbox.commands.run('true', { user: 'nobody-here' })).rejects.toBeInstanceOf(
      e2b.AuthenticationError,
    );
  });

  it('lists, connects to and kills a background command', async () => {
    const a = await sandbox.commands.run('sleep 30', { background: true });
    const b = await sandbox.commands.run('sleep 31', { background: true, cwd: '/tmp', envs: { K: 'v' } });
    const listed = await sandbox.commands.list();
    expect(listed).toEqual(
      expect.arrayContaining([
        { pid: a.pid, cmd: '/bin/bash', args: ['-l', '-c', 'sleep 30'], envs: {} },
        { pid: b.pid, cmd: '/bin/bash', args: ['-l', '-c', 'sleep 31'], envs: { K: 'v' }, cwd: '/tmp' },
      ]),
    );

    const again = await sandbox.commands.connect(a.pid);
    expect(again.pid).toBe(a.pid);
    expect(await sandbox.commands.kill(a.pid)).toBe(true);
    // envd's wording for a signal; both the Start and the Connect stream get the end
    for (const h of [a, again])
      await expect(h.wait()).rejects.toMatchObject({ exitCode: -1, error: 'signal: killed' });
    await expect(sandbox.commands.run(`kill -0 ${a.pid}`)).rejects.toBeInstanceOf(e2b.CommandExitError);
    expect((await sandbox.commands.list()).map((p) => p.pid)).not.toContain(a.pid);

    expect(await b.kill()).toBe(true);
    expect(await sandbox.commands.kill(999_999)).toBe(false);
    await expect(sandbox.commands.connect(999_999)).rejects.toBeInstanceOf(e2b.NotFoundError);
  });

  it('keeps a command running when its client disconnects, and a late Connect gets its end', async () => {
    const h = await sandbox.commands.run('sleep 0.5; echo done; exit 4', { background: true });
    await h.disconnect();
    const follow = await sandbox.commands.connect(h.pid);
    const err = await follow.wait().catch((e: unknown) => e);
    expect(err).toMatchObject({ exitCode: 4, stdout: 'done\n' });
    // exited, but still within envd's 30 s retention: Connect answers with the stored end
    const late = await sandbox.commands.connect(h.pid);
    await expect(late.wait()).rejects.toMatchObject({ exitCode: 4, stdout: '' });
  });

  it('sends stdin and closes it', async () => {
    const cat = await sandbox.commands.run('cat', { background: true, stdin: true });
    await sandbox.commands.sendStdin(cat.pid, 'Hello, ');
    await cat.sendStdin(new TextEncoder().encode('World!\n'));
    await cat.closeStdin();
    expect(await cat.wait()).toMatchObject({ exitCode: 0, stdout: 'Hello, World!\n' });

    // without stdin:true the command reads /dev/null and stdin is refused
    expect((await sandbox.commands.run('cat; echo eof')).stdout).toBe('eof\n');
    const sleeper = await sandbox.commands.run('sleep 30', { background: true });
    await expect(sandbox.commands.sendStdin(sleeper.pid, 'x')).rejects.toThrow('not enabled or closed');
    await sleeper.kill();
  });

  it('kills a command when its timeout expires', async () => {
    const started = Date.now();
    await expect(sandbox.commands.run('sleep 30', { timeoutMs: 1000 })).rejects.toBeInstanceOf(
      e2b.TimeoutError,
    );
    expect(Date.now() - started).toBeLessThan(5000);
    // the process is gone, not just the stream
    await expect
      .poll(async () => (await sandbox.commands.list()).map((p) => p.args[2]))
      .not.toContain('sleep 30');

    const h = await sandbox.commands.run('sleep 30', { timeoutMs: 1000, background: true });
    await expect(h.wait()).rejects.toBeInstanceOf(e2b.TimeoutError);
  });

  it('streams a large output whole', async () => {
    let chunks = 0;
    const r = await sandbox.commands.run('head -c 30000000 /dev/zero | tr "\\0" a', {
      onStdout: () => void chunks++,
    });
    expect(r.stdout.length).toBe(30_000_000);
    expect(chunks).toBeGreaterThan(1);
  });

  it('a sandbox killed mid-command fails the command with the SDK\'s "killed" error', async () => {
    const doomed = await e2b.Sandbox.create('base');
    const cmd = await doomed.commands.run('sleep 60', { background: true });
    await doomed.kill();
    const err = (await cmd.wait().catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(e2b.TimeoutError);
    expect(err.message).toContain('sandbox was killed or reached its end of life');
  });
});
