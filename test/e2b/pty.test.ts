import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes, startTestCove, stopTestCove } from '../helpers.ts';

const loadE2b = () => import('e2b');
type E2b = Awaited<ReturnType<typeof loadE2b>>;

/** `sandbox.pty` through the unmodified SDK: bash -i -l on a terminal (spec 4.2). */
describe.skipIf(!canRunSandboxes)('e2b pty', () => {
  let cove: Awaited<ReturnType<typeof startTestCove>>;
  let e2b: E2b;
  let sandbox: InstanceType<E2b['Sandbox']>;
  const decoder = new TextDecoder();
  const input = (s: string) => new TextEncoder().encode(s);

  beforeAll(async () => {
    cove = await startTestCove();
    process.env.E2B_API_URL = process.env.E2B_SANDBOX_URL = cove.url;
    process.env.E2B_API_KEY = cove.apiKey;
    e2b = await loadE2b();
    sandbox = await e2b.Sandbox.create('base');
  });

  afterAll(async () => {
    if (cove) expect(await stopTestCove(cove)).toEqual([]);
  });

  it('creates a terminal with the SDK defaults and the given envs, and exits 0', async () => {
    let output = '';
    const terminal = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      envs: { ABC: '123' },
      onData: (d) => void (output += decoder.decode(d)),
    });
    await sandbox.pty.sendInput(terminal.pid, input('echo "$ABC $TERM $LANG"; tty; whoami\nexit\n'));
    const result = await terminal.wait();
    expect(result.exitCode).toBe(0);
    expect(output).toContain('123 xterm-256color C.UTF-8');
    expect(output).toMatch(/\/dev\/pts\/\d+/);
    expect(output).toContain('user');
  });

  it('resizes the terminal', async () => {
    let output = '';
    const terminal = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      onData: (d) => void (output += decoder.decode(d)),
    });
    await sandbox.pty.resize(terminal.pid, { cols: 100, rows: 30 });
    await sandbox.pty.sendInput(terminal.pid, input('echo "size=$(tput cols)x$(tput lines)"\nexit\n'));
    await terminal.wait();
    expect(output).toContain('size=100x30');
  });

  it('reconnects: input after Connect is echoed to the new handler, same pid', async () => {
    let first = '';
    let second = '';
    const terminal = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      envs: { FOO: 'bar' },
      onData: (d) => void (first += decoder.decode(d)),
    });
    await sandbox.pty.sendInput(terminal.pid, input('echo one-$FOO\n'));
    // The echo of the input comes first; the command's output once the interactive shell has
    // started, which may take seconds on a microVM under software emulation.
    await expect.poll(() => first, { timeout: 30_000 }).toContain('one-bar');
    await terminal.disconnect();

    const again = await sandbox.pty.connect(terminal.pid, {
      onData: (d) => void (second += decoder.decode(d)),
    });
    expect(again.pid).toBe(terminal.pid);
    await sandbox.pty.sendInput(terminal.pid, input('echo two-$FOO\nexit 0\n'));
    expect((await again.wait()).exitCode).toBe(0);
    expect(second).toContain('two-bar');
    expect(first).not.toContain('two-bar');
  });

  it('kills a terminal; an unknown pid is false', async () => {
    const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: () => {} });
    expect(await sandbox.pty.kill(terminal.pid)).toBe(true);
    await expect(terminal.wait()).rejects.toMatchObject({ exitCode: -1, error: 'signal: killed' });
    await expect(sandbox.commands.run(`kill -0 ${terminal.pid}`)).rejects.toBeInstanceOf(
      e2b.CommandExitError,
    );
    expect(await sandbox.pty.kill(999_999)).toBe(false);
  });

  it('is listed, refuses stdin-only calls, and runs as root on request', async () => {
    let output = '';
    const terminal = await sandbox.pty.create({
      cols: 80,
      rows: 24,
      user: 'root',
      cwd: '/tmp',
      onData: (d) => void (output += decoder.decode(d)),
    });
    const listed = (await sandbox.commands.list()).find((p) => p.pid === terminal.pid);
    expect(listed).toMatchObject({ cmd: '/bin/bash', args: ['-i', '-l'], cwd: '/tmp' });
    expect(listed?.envs).toMatchObject({ TERM: 'xterm-256color' });
    await expect(sandbox.commands.sendStdin(terminal.pid, 'x')).rejects.toThrow('tty assigned to process');
    await sandbox.pty.sendInput(terminal.pid, input('echo "me=$(whoami) at $(pwd)"\nexit\n'));
    await terminal.wait();
    expect(output).toContain('me=root at /tmp');
  });
});
