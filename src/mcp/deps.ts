import type { SandboxLog } from '../audit/sandbox-log.ts';
import type { Logger } from '../core/log.ts';
import type { Manager } from '../manager/manager.ts';
import type { Memory } from '../services/memory/store.ts';
import type { CommandJobs } from './jobs.ts';

/** What the MCP tools use; built in src/main.ts. The same manager the REST API calls. */
export interface McpDeps {
  manager: Manager;
  sandboxLog: SandboxLog;
  log: Logger;
  /** Sandbox ports are served at `<scheme>://<port>-<id>.<domain>` (src/main.ts sandboxDomain). */
  domain: string;
  /** https when Cove serves TLS on its port. */
  scheme: 'http' | 'https';
  /** Cove's own address, for the header form of a port URL (`E2b-Sandbox-Id`/`-Port`). */
  url: string;
  /** COVE_MCP_CLEANUP: what a session's end does to the sandboxes it created. */
  cleanup: 'keep' | 'kill';
  /** Cove's memory service (src/services): memory_* tools when present. */
  memory?: Memory;
}

/** One MCP session as the tools see it. */
export interface McpSession {
  /** The transport's session id; sandboxes created in the session carry it as `mcp-session`. */
  id(): string | undefined;
  /** The API key's id, for the sandbox log. */
  keyId: string;
  jobs: CommandJobs;
}

/** The metadata key that names the MCP session a sandbox was created in. */
export const SESSION_KEY = 'mcp-session';
