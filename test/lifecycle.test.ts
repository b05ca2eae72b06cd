import { afterAll, describe, expect, it, vi } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import { canRunSandboxes, cli, hostLeftovers, spawnServer, testConfig } from './helpers.ts';

describe.skipIf(!canRunSandboxes)('the server can crash and restart without losing sandboxes', () => {
  const config = testConfig();
  let server: { child: ChildProcess; url: string } | undefined;

  afterAll(() => {
    server?.child.kill('SIGKILL');
  });

  it('adopts running sandboxes after a crash, times them out, and leaves nothing after kill', async () => {
    server = await spawnServer(config);
    const created = cli(server.url, ['sandbox', 'create', '--timeout', '600']);
    expect(created.status).toBe(0);
    const id = created.stdout.trim();
    const short = cli(server.url, ['sandbox', 'create', '--timeout', '4']).stdout.trim();
    expect(
      cli(server.url, ['sandbox', 'exec', id, '--', 'sh', '-c', 'echo before > /tmp/state; sleep 1000 &'])
        .status,
    ).toBe(0);

    // A crash: no graceful shutdown at all.
    server.child.kill('SIGKILL');
    await new Promise((r) => server!.child.once('exit', r));
    server = await spawnServer(config);

    const list = cli(server.url, ['sandbox', 'list']).stdout;
    expect(list).toContain(id);
    const exec = cli(server.url, [
      'sandbox',
      'exec',
      id,
      '--',
      'sh',
      '-c',
      'cat /tmp/state; pgrep -c sleep; exit 5',
    ]);
    expect(exec.stdout).toBe('before\n1\n');
    expect(exec.status).toBe(5);

    // The short sandbox's end time survived the restart too.
    await new Promise((r) => setTimeout(r, 5000));
    expect(cli(server.url, ['sandbox', 'list']).stdout).not.toContain(short);

    const bad = cli(server.url, ['sandbox', 'create', '--template', 'nope']);
    expect(bad.status).toBe(3);
    expect(bad.stderr).toMatch(/template nope does not exist/);
    expect(cli(server.url, ['sandbox', 'create', '--timeout', '-1']).status).toBe(2);
    expect(cli(server.url, ['sandbox', 'exec', 'aaaaaaaaaaaaaaaaaaaa', '--', 'true']).status).toBe(3);

    expect(cli(server.url, ['sandbox', 'kill', id]).status).toBe(0);
    expect(cli(server.url, ['sandbox', 'list']).stdout).not.toContain(id);
    // kill answers once the sandbox is unreachable; its teardown ends just after (manager.ts)
    await vi.waitFor(() => expect(hostLeftovers(config.instance, config.home)).toEqual([]), {
      timeout: 20_000,
      interval: 100,
    });
  });

  it('reclaims what a crash in the middle of a create leaves behind', async () => {
    server?.child.kill('SIGKILL');
    // Leftovers with no record: a directory and a network namespace named like a sandbox's.
    const { mkdirSync } = await import('node:fs');
    const { execFileSync } = await import('node:child_process');
    const ghost = 'zzzzzzzzzzzzzzzzzzzz';
    mkdirSync(`${config.home}/sandboxes/${ghost}/run`, { recursive: true });
    execFileSync('ip', ['netns', 'add', `${config.instance}-${ghost}`]);
    server = await spawnServer(config);
    const list = JSON.parse(cli(server.url, ['sandbox', 'list', '--json']).stdout) as Array<{
      sandboxID: string;
    }>;
    for (const s of list) cli(server.url, ['sandbox', 'kill', s.sandboxID]);
    expect(hostLeftovers(config.instance, config.home)).toEqual([]);
    server.child.kill('SIGTERM');
  });
});
