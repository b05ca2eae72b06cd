import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canRunSandboxes } from './helpers.ts';

const NET = fileURLToPath(new URL('../agent/build/cove-net', import.meta.url));
const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' });
const quiet = (...args: string[]) => {
  try {
    execFileSync('ip', args, { stdio: 'ignore' });
  } catch {
    /* already gone */
  }
};

// cove-net does over netlink what two `ip -batch` did (src/network/plumb.ts): every property
// of the result is checked here as `ip` reports it, on a bridge and a namespace of the test's own.
describe.skipIf(!canRunSandboxes)('cove-net attach', () => {
  const tag = randomBytes(3).toString('hex');
  const bridge = `hpn${tag}`;
  const veth = `hpv${tag}`;
  const netns = `cove-net-test-${tag}`;
  let holder: ChildProcess;

  beforeAll(async () => {
    ip('link', 'add', bridge, 'type', 'bridge');
    ip('link', 'set', bridge, 'up');
    // A process in a network namespace of its own, as crun's container init is.
    holder = spawn('unshare', ['-n', 'sleep', '300'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 200));
  });
  afterAll(() => {
    quiet('link', 'del', veth);
    quiet('netns', 'del', netns);
    quiet('link', 'del', bridge);
    holder.kill('SIGKILL');
  });

  it('names the namespace, puts the veth on the bridge (isolated) and sets address and route inside', () => {
    const attach = () =>
      execFileSync(
        NET,
        ['attach', netns, String(holder.pid), veth, `alias-${tag}`, bridge, '10.250.3.4', '16', '10.250.0.1'],
        {
          encoding: 'utf8',
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
    attach();
    const host = ip('-d', 'link', 'show', veth);
    expect(host).toContain(`master ${bridge}`);
    expect(host).toMatch(/state UP/);
    expect(host).toContain('isolated on');
    expect(host).toContain(`alias alias-${tag}`);
    expect(ip('-n', netns, '-br', 'addr', 'show', 'eth0')).toMatch(/UP\s+10\.250\.3\.4\/16/);
    expect(ip('-n', netns, '-br', 'link', 'show', 'lo')).toMatch(/UP|UNKNOWN/);
    expect(ip('-n', netns, 'route')).toContain('default via 10.250.0.1 dev eth0');
    // A second attach of the same name fails at the name, and says so.
    expect(attach).toThrow(/netns attach: File exists/);
  });
});
