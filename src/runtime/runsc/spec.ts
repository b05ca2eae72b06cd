import type { SandboxSpec } from '../driver.ts';
import { buildSpec, type OciSpec, type SpecModifier } from '../oci/spec.ts';
import { sandboxOciSpec } from '../oci/spec.ts';

/** Where the statx shim sits inside a runsc sandbox (agent/shim/statx.c says why). */
export const statxShimPath = '/.cove/statx.so';

/**
 * The sandbox's network namespace is the one the caller made and plumbed (capability
 * 'joins-netns'): runsc reads eth0's addresses and routes from it when its network stack starts.
 */
export function withNetnsPath(path: string): SpecModifier {
  return (spec) => {
    spec.linux.namespaces = spec.linux.namespaces.map((ns) =>
      ns.type === 'network' ? { type: 'network', path } : ns,
    );
  };
}

/**
 * No OCI seccomp filter inside gVisor. The host kernel is guarded by runsc's own filters on the
 * Sentry and the gofer; the sandbox's calls reach only the Sentry, which implements few of the
 * calls the deny list names (no bpf, io_uring, modules, kexec, keyrings, perf). And this runsc
 * ignores `errnoRet` (every errno rule returns EPERM), so the deny list's `clone3 → ENOSYS`
 * would become EPERM and break glibc's pthread_create, which falls back to clone only on ENOSYS.
 */
export const withoutSeccomp: SpecModifier = (spec) => {
  delete spec.linux.seccomp;
};

/** The statx shim (read-only) and the /etc/ld.so.preload that names it, both from the host. */
export function withStatxShim(shim: string, preloadFile: string): SpecModifier {
  return (spec) => {
    spec.mounts.push(
      { destination: statxShimPath, type: 'bind', source: shim, options: ['bind', 'ro', 'nosuid', 'nodev'] },
      {
        destination: '/etc/ld.so.preload',
        type: 'bind',
        source: preloadFile,
        options: ['bind', 'ro', 'nosuid', 'nodev', 'noexec'],
      },
    );
  };
}

/**
 * The OCI spec of a runsc sandbox: crun's (same namespaces, user namespace, limits,
 * capabilities, masked paths, agent mounts) with runsc's differences applied.
 */
export function runscOciSpec(
  s: SandboxSpec,
  cgroupParent: string,
  shim: { binary: string; preloadFile: string },
  bootIdFile?: string,
): OciSpec {
  if (s.netns === undefined) throw new Error(`runsc sandbox ${s.id}: no network namespace given`);
  return buildSpec(
    sandboxOciSpec(s, cgroupParent, bootIdFile),
    withNetnsPath(s.netns),
    withoutSeccomp,
    withStatxShim(shim.binary, shim.preloadFile),
  );
}
