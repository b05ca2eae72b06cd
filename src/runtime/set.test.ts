import { describe, expect, it } from 'vitest';
import { isCoveError } from '../core/errors.ts';
import type { Capability, RuntimeDriver, SandboxSpec } from './driver.ts';
import { createRuntimeSet } from './set.ts';

/** A driver that records calls and holds sandboxes in memory. */
function fake(name: string, capabilities: Capability[], opts: { broken?: boolean } = {}) {
  const held = new Set<string>();
  const calls: string[] = [];
  const driver: RuntimeDriver = {
    name,
    capabilities: new Set(capabilities),
    init: () => (opts.broken ? Promise.reject(new Error(`${name} is not installed`)) : Promise.resolve()),
    create: (s: SandboxSpec) => {
      held.add(s.id);
      calls.push(`create ${s.id}`);
      return Promise.resolve({ pid: 42 });
    },
    start: (id) => {
      calls.push(`start ${id}`);
      return Promise.resolve();
    },
    status: (id) => Promise.resolve(held.has(id) ? 'running' : 'missing'),
    list: () => Promise.resolve([...held]),
    destroy: (id) => {
      held.delete(id);
      calls.push(`destroy ${id}`);
      return Promise.resolve();
    },
  };
  return { driver, calls };
}

const spec = (id: string, runtime?: string): SandboxSpec => ({
  id,
  rootfs: '/r',
  bundleDir: '/b',
  uidBase: 0,
  uidCount: 1,
  limits: { cpus: 1, memoryMiB: 64, pids: 16 },
  agentBinary: '/a',
  agentRunDir: '/d',
  agentToken: 't',
  ...(runtime && { runtime }),
});

describe('a set of runtimes', () => {
  it('creates on the named backend or the default, and finds each sandbox by id after', async () => {
    const crun = fake('crun', ['pause']);
    const runsc = fake('runsc', ['checkpoint-memory', 'joins-netns']);
    const set = createRuntimeSet([crun.driver, runsc.driver], 'crun');
    await set.init();
    await set.create(spec('a'));
    await set.create(spec('b', 'runsc'));
    await set.start('b');
    expect(crun.calls).toEqual(['create a']);
    expect(runsc.calls).toEqual(['create b', 'start b']);
    expect((await set.list()).sort()).toEqual(['a', 'b']);
    expect(await set.status('b')).toBe('running');
    await set.destroy('b');
    await set.destroy('b'); // idempotent
    expect(await set.status('b')).toBe('missing');
    expect(set.get('runsc').capabilities.has('checkpoint-memory')).toBe(true);
    expect(set.capabilities.has('checkpoint-memory')).toBe(false); // the default's
  });

  it('refuses an unknown backend and a capability the sandbox’s backend lacks', async () => {
    const set = createRuntimeSet([fake('crun', []).driver], 'crun');
    await set.init();
    expect(() => set.get('kata')).toThrow(/unknown runtime 'kata'/);
    await set.create(spec('a'));
    await expect(set.checkpoint('a', '/img')).rejects.toSatisfy((e) => isCoveError(e, 'conflict'));
  });

  it('serves with the default backend when another one is not installed, and says why at create', async () => {
    const set = createRuntimeSet(
      [fake('crun', []).driver, fake('runsc', [], { broken: true }).driver],
      'crun',
    );
    await set.init();
    await expect(set.create(spec('x', 'runsc'))).rejects.toThrow(/not installed/);
    await expect(
      createRuntimeSet([fake('runsc', [], { broken: true }).driver], 'runsc').init(),
    ).rejects.toThrow();
  });
});
