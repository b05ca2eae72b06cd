/**
 * The isolation backend behind every sandbox. The manager imports only this file; crun and
 * runsc (same OCI bundle, other binary) and the QEMU microVM implement it.
 *
 * Lifecycle of one sandbox, as the manager drives it:
 *   create(spec)  → the sandbox exists, its PID 1 (the agent) is created but not running;
 *                   returns that process's host pid so the network can be plumbed into it.
 *   start(id)     → PID 1 runs. The agent then listens on `spec.agentSocket` (host path).
 *   destroy(id)   → every process is killed and the runtime's state is removed. Idempotent:
 *                   a second call, or a call for an id the runtime never knew, succeeds.
 * The driver owns nothing outside the runtime's own state (cgroups included); the root
 * filesystem and the network belong to the caller, which tears them down after destroy().
 */
export interface SandboxSpec {
  id: string;
  /** Host path of the mounted root filesystem (the caller mounted it). */
  rootfs: string;
  /** The template's own files under that mount (capability 'guest-kernel': its disk image is made of them). */
  templateRootfs?: string;
  /** Directory for the bundle (config.json) and the runtime's log. */
  bundleDir: string;
  /** Host uid/gid that root in the sandbox maps to, and how many ids follow it. */
  uidBase: number;
  uidCount: number;
  limits: { cpus: number; memoryMiB: number; pids: number };
  /** Host path of the agent binary, bind-mounted read-only into the sandbox. */
  agentBinary: string;
  /** Host directory holding the agent's socket, bind-mounted at /.cove/run. */
  agentRunDir: string;
  agentToken: string;
  /**
   * A network namespace the caller made and plumbed before create (`/run/netns/<name>`),
   * given to drivers with capability 'joins-netns'; others make their own and ignore this.
   */
  netns?: string;
  /** Which backend of a RuntimeSet runs the sandbox (its default when absent). */
  runtime?: string;
  /**
   * Host directories (volumes, already idmapped by the caller) bound read-write at
   * `destination`, resolved inside the sandbox's root; none when absent.
   */
  volumes?: ReadonlyArray<{ source: string; destination: string }>;
}

export type SandboxStatus = 'created' | 'running' | 'paused' | 'stopped' | 'missing';

/**
 * What a backend can do beyond create/start/status/list/destroy. 'joins-netns': create()
 * joins `spec.netns`, plumbed before create (runsc reads eth0's addresses when it starts its
 * own network stack); without it the runtime makes the namespace inside the sandbox's user
 * namespace and the caller plumbs it between create and start (crun: see oci/spec.ts).
 * 'restore-in-place': restore() takes the root filesystem mount and network namespace the
 * sandbox was checkpointed from as they are, so a caller may keep both across a pause (runsc).
 * 'agent-on-host': the agent is a process of this host's kernel, its host pid in
 * `<bundleDir>/pid`, so the files it opens are reachable at /proc/<pid>/fd (crun; the caller
 * checks each one before use: src/agent-channel/host-files.ts).
 */
export type Capability =
  'pause' | 'checkpoint-memory' | 'guest-kernel' | 'joins-netns' | 'restore-in-place' | 'agent-on-host';

export interface RuntimeDriver {
  readonly name: string;
  readonly capabilities: ReadonlySet<Capability>;
  /** Prepares the host once (state dirs, cgroup parents); safe to call on every start. */
  init(): Promise<void>;
  create(spec: SandboxSpec): Promise<{ pid: number }>;
  start(id: string): Promise<void>;
  status(id: string): Promise<SandboxStatus>;
  /** Ids of every sandbox this runtime knows, running or not: what reconcile compares with the store. */
  list(): Promise<string[]>;
  destroy(id: string): Promise<void>;
  /**
   * Capability 'pause': stop every process of a running sandbox in place (cgroup freezer) and
   * let it go on again. Memory stays where it is, so this lasts only while the host is up.
   */
  freeze?(id: string): Promise<void>;
  thaw?(id: string): Promise<void>;
  /**
   * Capability 'checkpoint-memory': save a running sandbox (memory, processes, open files) into
   * `imageDir` and stop it; restore() brings such an image back as a running sandbox described
   * by `spec` (the same id for a resume, a new one for a fork), returning its PID 1's host pid.
   * `withDisk`: a runtime that keeps the sandbox's writes in a disk of its own (a VM's) copies
   * it into the image too, for restoring the image as other sandboxes (forks).
   */
  checkpoint?(id: string, imageDir: string, opts?: { withDisk?: boolean }): Promise<void>;
  restore?(spec: SandboxSpec, imageDir: string): Promise<{ pid: number }>;
  /**
   * A running sandbox's memory and own disk saved into `imageDir` while it goes on (a VM's
   * snapshot or fork source, where the disk is the runtime's): restore() takes the image as
   * another sandbox. Absent: snapshots copy the writable layer, forks checkpoint the source.
   * `paused`: the sandbox is paused into its checkpoint image `image` (its disk in `bundleDir`).
   */
  snapshot?(id: string, imageDir: string, paused?: { image: string; bundleDir: string }): Promise<void>;
  /**
   * At adoption after a restart: a running sandbox whose agent has no socket, because it closed
   * it for a checkpoint (runsc quiesces the agent first) that a crash of Cove cut short, is
   * told to listen again. Absent: the runtime never has its agent close its socket.
   */
  relisten?(id: string): Promise<void>;
}

/** Where the agent sits inside every sandbox. */
export const agentPaths = {
  binary: '/.cove/agent',
  runDir: '/.cove/run',
  socket: '/.cove/run/agent.sock',
} as const;
