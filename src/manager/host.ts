import { constants } from 'node:fs';
import { chown, mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type HostFiles, hostFiles } from '../agent-channel/host-files.ts';
import { CleanupStack } from '../core/cleanup.ts';
import { CoveError } from '../core/errors.ts';
import { run } from '../core/exec.ts';
import { NETNS_DIR, type Network } from '../network/network.ts';
import type { SandboxSpec } from '../runtime/driver.ts';
import type { RuntimeSet } from '../runtime/set.ts';
import { mountVolumes, refuseIfMounted, unmountVolumes } from '../volumes/sandbox-mounts.ts';
import { copyLayer } from './layers.ts';
import { installEgressCa } from './trust-store.ts';

/**
 * The host side of one sandbox: its directory, root filesystem mounts, runtime state and
 * network. `provision` registers each undo before the step it undoes (every undo is
 * idempotent, so a step that fails half-way is undone too); `teardown` removes everything a
 * sandbox may own and succeeds when parts are already gone, so that it serves kill, a failed
 * create and the reclaim of leftovers alike.
 */
export interface HostDeps {
  runtime: RuntimeSet;
  network: Network;
  sandboxesDir: string;
  agentBinary: string;
  mountHelper: string;
  /** The host path of a volume's files (src/volumes): throws for a volume that is gone. */
  volumeSource?: (volumeId: string) => string;
  /** The egress proxy's CA certificate (PEM), put in every sandbox's trust store (trust-store.ts). */
  egressCa?: string;
}

/** Host uids of a sandbox: its own range of 65536, picked by its slot. Root in the sandbox
 * is `uidBase`, never a uid of the host's own users (the ranges start at 1,000,000). */
export const UID_COUNT = 65_536;
export function uidBase(slot: number): number {
  return 1_000_000 + slot * UID_COUNT;
}

export function sandboxDir(deps: HostDeps, id: string): string {
  return join(deps.sandboxesDir, id);
}

export function agentSocket(deps: HostDeps, id: string): string {
  return join(sandboxDir(deps, id), 'run', 'agent.sock');
}

/** The agent's open files, reachable from here when its runtime runs it as a host process. */
export function agentFiles(deps: HostDeps, id: string, runtime: string | undefined): HostFiles | undefined {
  if (!deps.runtime.get(runtime).capabilities.has('agent-on-host')) return undefined;
  const dir = sandboxDir(deps, id);
  return hostFiles({ pidFile: join(dir, 'pid'), rootfs: join(dir, 'rootfs') });
}

export interface ProvisionInput {
  id: string;
  slot: number;
  templateRootfs: string;
  limits: { cpus: number; memoryMiB: number; pids: number };
  agentToken: string;
  /** The backend (RuntimeSet name); the server's default when absent. */
  runtime?: string;
  /** A paused sandbox booting again: its directory and writable layer exist and outlive a failure. */
  existing?: boolean;
  /** A snapshot's writable layer to start from (copied, its owners shifted to this slot's range). */
  seed?: { upper: string; uidBase: number };
  /** A checkpoint image to restore (capability 'checkpoint-memory') instead of a cold start. */
  restoreFrom?: string;
  /** Volumes to mount (the record's volumeMounts), each at its path. */
  volumes?: ReadonlyArray<{ volumeId: string; path: string }>;
}

/** What a sandbox's filesystem starts from (its template, or a snapshot's or fork's layer), and a fork's memory image. */
export function startingPoint(
  templateRootfs: string,
  input?: { seed?: ProvisionInput['seed']; restore?: { image: string } },
): Pick<ProvisionInput, 'templateRootfs' | 'seed' | 'restoreFrom'> {
  return {
    templateRootfs,
    ...(input?.seed && { seed: input.seed }),
    ...(input?.restore && { restoreFrom: input.restore.image }),
  };
}

/** Creates and starts the sandbox. On failure everything done so far is undone before it throws. */
export async function provision(deps: HostDeps, input: ProvisionInput): Promise<void> {
  const { id, slot } = input;
  const dir = sandboxDir(deps, id);
  const runDir = join(dir, 'run');
  const base = uidBase(slot);
  const netSlot = deps.network.slot(slot, id);
  const undo = new CleanupStack();
  try {
    if (!input.existing) {
      undo.push('directory', () => rm(dir, { recursive: true, force: true }));
      await mkdir(dir, { mode: 0o711 }); // searchable: the sandbox's root walks through it to its rootfs
    }
    await mkdir(runDir, { mode: 0o700, recursive: true });
    await chown(runDir, base, base); // the agent (root of the sandbox) creates its socket here
    if (input.seed) {
      const ids = { fromBase: input.seed.uidBase, toBase: base, count: UID_COUNT };
      await copyLayer(input.seed.upper, join(dir, 'upper'), ids);
    }

    undo.push('rootfs', () => unmountRootfs(deps, dir));
    await run(deps.mountHelper, ['up', input.templateRootfs, dir, String(base), String(UID_COUNT)]);

    await writeHosts(join(dir, 'rootfs'), id, deps.network.slot(slot, id).address, base);
    if (deps.egressCa) {
      const fresh = !input.existing && !input.seed ? input.templateRootfs : undefined;
      await installEgressCa(join(dir, 'rootfs'), deps.egressCa, base, fresh);
    }

    undo.push('volumes', () => unmountVolumes(deps.mountHelper, dir));
    const volumes = await mountVolumes(deps.mountHelper, dir, volumeSources(deps, input), base, UID_COUNT);

    // A runtime that joins a namespace (runsc) gets it plumbed first; crun makes its own
    // inside the sandbox's user namespace, plumbed between create and start (oci/spec.ts).
    const driver = deps.runtime.get(input.runtime);
    const joins = driver.capabilities.has('joins-netns');
    if (joins) {
      undo.push('network', () => deps.network.detach(netSlot));
      await deps.network.attach(netSlot, id);
    }

    undo.push('runtime', () => deps.runtime.destroy(id));
    const spec = sandboxSpec(deps, input, volumes);
    // A checkpoint image comes back running; without the capability the layer boots cold.
    const restoring = input.restoreFrom !== undefined && driver.capabilities.has('checkpoint-memory');
    const { pid } = restoring
      ? await deps.runtime.restore(spec, input.restoreFrom!)
      : await deps.runtime.create(spec);

    const startIt = restoring ? undefined : () => deps.runtime.start(id);
    if (!joins) {
      undo.push('network', () => deps.network.detach(netSlot));
      await deps.network.attach(netSlot, id, pid, startIt);
    } else await startIt?.();
  } catch (err) {
    await undo.run().catch((cleanupErr: unknown) => {
      throw new AggregateError(
        [err, cleanupErr],
        `create failed and its undo failed too: ${String(cleanupErr)}`,
      );
    });
    throw err;
  }
}

/** What the runtime is given for a sandbox provisioned from `input`, its volumes mounted. */
function sandboxSpec(deps: HostDeps, input: ProvisionInput, volumes: SandboxSpec['volumes']): SandboxSpec {
  const { id, slot } = input;
  const dir = sandboxDir(deps, id);
  const driver = deps.runtime.get(input.runtime);
  return {
    id,
    runtime: driver.name,
    ...(driver.capabilities.has('joins-netns') && {
      netns: join(NETNS_DIR, deps.network.slot(slot, id).netns),
    }),
    rootfs: join(dir, 'rootfs'),
    templateRootfs: input.templateRootfs,
    bundleDir: dir,
    uidBase: uidBase(slot),
    uidCount: UID_COUNT,
    limits: input.limits,
    agentBinary: deps.agentBinary,
    agentRunDir: join(dir, 'run'),
    agentToken: input.agentToken,
    ...(volumes && volumes.length > 0 && { volumes }),
  };
}

/**
 * Restores a checkpointed sandbox into the root filesystem mount and network namespace it was
 * saved from, kept by the pause (capability 'restore-in-place'): only its volumes are mounted
 * again. A failure undoes those and the runtime; the caller then releases the rest.
 */
export async function restoreInPlace(deps: HostDeps, input: ProvisionInput, image: string): Promise<void> {
  const dir = sandboxDir(deps, input.id);
  const undo = new CleanupStack();
  try {
    undo.push('volumes', () => unmountVolumes(deps.mountHelper, dir));
    const base = uidBase(input.slot);
    const volumes = await mountVolumes(deps.mountHelper, dir, volumeSources(deps, input), base, UID_COUNT);
    undo.push('runtime', () => deps.runtime.destroy(input.id));
    await deps.runtime.restore(sandboxSpec(deps, input, volumes), image);
  } catch (err) {
    await undo.run().catch(() => {});
    throw err;
  }
}

/**
 * Removes every host object of sandbox `id`, in the reverse order of provision: the runtime
 * first (so nothing runs on what is removed next), then the network, mounts and directory.
 * `slot` is unknown for leftovers found without a record: their veth is found by its alias.
 */
export async function teardown(deps: HostDeps, id: string, slot?: number): Promise<void> {
  const undo = new CleanupStack();
  const dir = sandboxDir(deps, id);
  undo.push('directory', async () => {
    await refuseIfMounted(dir); // a removal through a mount would delete a volume's files
    await rm(dir, { recursive: true, force: true });
  });
  undo.push('rootfs', () => unmountRootfs(deps, dir));
  undo.push('volumes', () => unmountVolumes(deps.mountHelper, dir));
  undo.push('network', async () => {
    if (slot !== undefined) return deps.network.detach(deps.network.slot(slot, id));
    const owned = (await deps.network.owners()).find((o) => o.id === id);
    if (owned) await deps.network.detach(owned);
  });
  undo.push('runtime', () => deps.runtime.destroy(id));
  await undo.run();
}

/**
 * Stops a sandbox and releases its host objects but its directory: the writable layer (and a
 * checkpoint image) stay for a resume. Idempotent, as teardown; the record keeps the slot.
 */
export async function stopKeepingDisk(deps: HostDeps, id: string, slot: number): Promise<void> {
  const undo = new CleanupStack();
  undo.push('rootfs', () => unmountRootfs(deps, sandboxDir(deps, id)));
  undo.push('volumes', () => unmountVolumes(deps.mountHelper, sandboxDir(deps, id)));
  undo.push('network', () => deps.network.detach(deps.network.slot(slot, id)));
  undo.push('runtime', () => deps.runtime.destroy(id));
  await undo.run();
}

/**
 * A checkpointed sandbox kept in place for restoreInPlace: its volumes and runtime state
 * released, its root filesystem mount and network namespace (and egress rules) kept.
 */
export async function releaseKeepingPlace(deps: HostDeps, id: string): Promise<void> {
  const undo = new CleanupStack();
  undo.push('volumes', () => unmountVolumes(deps.mountHelper, sandboxDir(deps, id)));
  undo.push('runtime', () => deps.runtime.destroy(id));
  await undo.run();
}

/**
 * /etc/hosts names the sandbox (sudo and many tools resolve their own hostname). Written
 * into the fresh overlay, so it is the sandbox's own file to edit: owned by its root. The
 * rootfs is the untouched template at this point, and O_NOFOLLOW keeps it so anyway.
 */
async function writeHosts(rootfs: string, id: string, address: string, owner: number): Promise<void> {
  const text = `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n${address}\t${id}\n`;
  const file = await open(
    join(rootfs, 'etc', 'hosts'),
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW,
    0o644,
  );
  try {
    await file.writeFile(text);
    await file.chown(owner, owner);
  } finally {
    await file.close();
  }
}

/** Each volume's host path and where it goes; a volume deleted meanwhile fails the create. */
function volumeSources(deps: HostDeps, input: ProvisionInput) {
  return (input.volumes ?? []).map((v) => {
    if (!deps.volumeSource) throw new CoveError('invalid_argument', 'this Cove serves no volumes');
    return { source: deps.volumeSource(v.volumeId), destination: v.path };
  });
}

async function unmountRootfs(deps: HostDeps, dir: string): Promise<void> {
  await run(deps.mountHelper, ['down', dir]);
}
