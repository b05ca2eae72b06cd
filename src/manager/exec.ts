import type { SpawnOptions } from '../agent-channel/client.ts';
import type { Template } from '../templates/index.ts';
import type { SandboxUser } from './users.ts';

export interface ExecInput {
  argv: string[];
  /** A user name or numeric uid of the sandbox; the template's default user when absent. */
  user?: string;
  env?: Record<string, string>;
  cwd?: string;
  pty?: { cols: number; rows: number };
  stdin?: boolean;
  tag?: string;
}

/**
 * What the agent is asked to run. The environment is layered as envd does (spec 3.4): the
 * template's defaults and the user's identity, then the sandbox-wide variables from create,
 * then the command's own, which win and never outlive the command.
 */
export function spawnOptions(
  template: Template,
  who: SandboxUser,
  sandboxEnv: Record<string, string>,
  input: ExecInput,
): SpawnOptions {
  return {
    argv: input.argv,
    env: {
      ...template.env,
      HOME: who.home,
      USER: who.name,
      LOGNAME: who.name,
      SHELL: who.shell,
      ...sandboxEnv,
      ...input.env,
    },
    cwd: input.cwd ?? template.workdir ?? who.home,
    uid: who.uid,
    gid: who.gid,
    groups: who.groups,
    ...(input.pty && { pty: input.pty }),
    stdin: input.stdin ?? false,
    ...(input.tag !== undefined && { tag: input.tag }),
  };
}
