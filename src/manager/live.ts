import type { AgentClient } from '../agent-channel/client.ts';
import type { SandboxRecord } from '../store/store.ts';
import type { Template } from '../templates/index.ts';
import type { ProcessRegistry } from './processes.ts';
import type { CreateSandboxInput } from './types.ts';
import type { SandboxUser } from './users.ts';

/** A sandbox this process is serving: its record plus what lives only in memory. */
export interface Live {
  record: SandboxRecord;
  agent?: AgentClient;
  timer?: NodeJS.Timeout;
  /** Users resolved from the sandbox's own /etc/passwd, by name (read once per name). */
  users: Map<string, Promise<SandboxUser>>;
  /** The template's defaults (env, user), read once: exec is a hot path. */
  template?: Template;
  /** What envd started here (List, Connect, stdin); dropped with the sandbox. */
  processes: ProcessRegistry;
  killing?: Promise<void>;
  /** Resolves once a kill made it unreachable, before its teardown (manager.ts, kill). */
  unreachable?: Promise<void>;
  /** A pause, resume or snapshot under way: they run one at a time per sandbox (pause.ts). */
  busy?: Promise<unknown>;
}

/** What the manager tells the edges: `killed` fires as soon as a sandbox stops being
 * reachable (kill, timeout or death), before its teardown, so that gateways can drop its
 * open connections; `created` when a create (a pool claim or cold) is done, before its reply. */
export interface ManagerEvents {
  killed: [id: string, reason: 'requested' | 'timeout' | 'died'];
  created: [c: { id: string; template: string; pooled: boolean; ms: number; input: CreateSandboxInput }];
  /** The sandbox stopped being reachable because it paused: edges drop its connections. */
  paused: [id: string];
}
