import type { Template } from '../store.ts';

/**
 * A sandbox that runs one build step: made by the manager like any sandbox (same runtime,
 * limits and network: a build is untrusted code), invisible to the API, removed by a restart.
 * Wired in src/main.ts (manager.buildSandbox), so that templates never import the manager.
 */
export interface BuildSandbox {
  /** Host uid of the sandbox's root: files it wrote are owned by uidBase + their uid. */
  uidBase: number;
  /** Host paths of its merged root (mounted until remove) and of its overlay upper dir. */
  rootfs: string;
  upper: string;
  /** Runs argv as `user` and resolves to its exit status (128 + signal when killed). */
  run(
    argv: string[],
    opts: { user: string; env: Record<string, string>; cwd?: string },
    onData: (data: Buffer) => void,
  ): Promise<number>;
  /** Writes a file as the sandbox's root, resolved inside the sandbox. */
  writeFile(path: string, data: AsyncIterable<Buffer>): Promise<void>;
  /** Ends every process; the filesystem stays mounted for the builder to read. */
  stop(): Promise<void>;
  /** Tears everything down; idempotent. */
  remove(): Promise<void>;
}

export type OpenBuildSandbox = (template: Template) => Promise<BuildSandbox>;
