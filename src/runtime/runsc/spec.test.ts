import { describe, expect, it } from 'vitest';
import { runscOciSpec, statxShimPath } from './spec.ts';

const base = {
  id: 'abcdefghijabcdefghij',
  rootfs: '/var/lib/cove/sandboxes/x/rootfs',
  bundleDir: '/var/lib/cove/sandboxes/x',
  uidBase: 1_065_536,
  uidCount: 65_536,
  limits: { cpus: 2, memoryMiB: 512, pids: 1024 },
  agentBinary: '/opt/cove-agent',
  agentRunDir: '/var/lib/cove/sandboxes/x/run',
  agentToken: 'secret',
};
const shim = { binary: '/opt/cove-statx.so', preloadFile: '/var/lib/cove/sandboxes/x/ld.so.preload' };

describe('the OCI spec of a runsc sandbox', () => {
  const spec = runscOciSpec({ ...base, netns: '/run/netns/cove-abc' }, 'cove', shim);

  it('joins the namespace the caller plumbed and keeps every other namespace its own', () => {
    expect(spec.linux.namespaces.find((n) => n.type === 'network')).toEqual({
      type: 'network',
      path: '/run/netns/cove-abc',
    });
    expect(spec.linux.namespaces.filter((n) => n.path !== undefined)).toHaveLength(1);
    expect(spec.linux.uidMappings).toEqual([{ containerID: 0, hostID: 1_065_536, size: 65_536 }]);
  });

  it('loads no seccomp filter in the Sentry, keeps capabilities and masks', () => {
    expect(spec.linux.seccomp).toBeUndefined();
    expect(spec.process.capabilities?.bounding).not.toContain('CAP_SYS_ADMIN');
    expect(spec.process.capabilities?.bounding).not.toContain('CAP_NET_RAW');
    expect(spec.linux.maskedPaths).toContain('/proc/kcore');
  });

  it('preloads the statx shim, read-only', () => {
    const lib = spec.mounts.find((m) => m.destination === statxShimPath);
    const preload = spec.mounts.find((m) => m.destination === '/etc/ld.so.preload');
    expect(lib).toMatchObject({ source: '/opt/cove-statx.so', type: 'bind' });
    expect(lib?.options).toContain('ro');
    expect(preload).toMatchObject({ source: shim.preloadFile });
    expect(preload?.options).toContain('ro');
  });

  it('needs a network namespace', () => {
    expect(() => runscOciSpec(base, 'cove', shim)).toThrow(/no network namespace/);
  });
});
