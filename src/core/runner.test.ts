import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { run } from './exec.ts';
import { runnerAvailable, runThroughHelper } from './runner.ts';

// The helper is built by `make -C agent` (scripts/setup.sh); without it run() would quietly
// use child_process and these tests would prove nothing about it.
describe('cove-run (host commands without forking the server)', () => {
  it('is built', () => {
    expect(runnerAvailable()).toBe(true);
  });

  it('returns stdout and stderr, feeds stdin, and passes arguments untouched (no shell)', async () => {
    expect(await run('echo', ['a', 'b c', '$HOME;*'])).toEqual({ stdout: 'a b c $HOME;*\n', stderr: '' });
    const input = 'line\n'.repeat(200_000); // 1 MB: larger than a pipe's buffer
    expect((await run('wc', ['-c'], { input })).stdout.trim()).toBe(String(input.length));
    const both = await runThroughHelper('sh', ['-c', 'echo out; echo err >&2; exit 0']);
    expect(both).toEqual({ code: 0, signal: 0, stdout: 'out\n', stderr: 'err\n' });
  });

  it('fails as run() always did: a non-zero exit, a missing binary, a timeout', async () => {
    await expect(run('sh', ['-c', 'echo first >&2; echo why >&2; exit 3'])).rejects.toThrow(
      'sh -c echo first >&2; echo why >&2; exit 3: first why',
    );
    expect((await runThroughHelper('sh', ['-c', 'exit 7'])).code).toBe(7);
    await expect(run('cove-no-such-binary', [])).rejects.toThrow('spawn cove-no-such-binary ENOENT');
    const started = performance.now();
    await expect(run('sleep', ['10'], { timeoutMs: 100 })).rejects.toThrow('killed by signal 15');
    expect(performance.now() - started).toBeLessThan(5000);
  });

  it('writes a command to a log file instead of pipes when asked', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cove-run-'));
    try {
      const log = join(dir, 'log');
      const ended = await runThroughHelper('sh', ['-c', 'echo one; echo two >&2'], { log });
      expect(ended).toEqual({ code: 0, signal: 0, stdout: '', stderr: '' });
      await runThroughHelper('echo', ['three'], { log });
      expect(await readFile(log, 'utf8')).toBe('one\ntwo\nthree\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs more commands at once than the helper holds (the rest wait), each with its own output', async () => {
    const outs = await Promise.all(Array.from({ length: 400 }, (_, i) => run('echo', [String(i)])));
    expect(outs.map((o) => o.stdout)).toEqual(Array.from({ length: 400 }, (_, i) => `${i}\n`));
  });
});
