import { join } from 'node:path';
import type { AgentClient } from '../agent-channel/client.ts';
import type { SandboxRecord, Store } from '../store/store.ts';
import type { BuildSandbox } from '../templates/build/index.ts';
import type { Template } from '../templates/index.ts';
import { spawnOptions } from './exec.ts';
import { sandboxDir, teardown, uidBase, type HostDeps } from './host.ts';
import { readUserDb, resolveUser } from './users.ts';

/**
 * A sandbox for one step of a template build (src/templates/build): built by the manager like
 * any other (same runtime, limits and network: a build is untrusted code), but recorded as
 * `pooled`, so that it is invisible to the API and a restart removes it rather than adopting
 * it. `stop` ends its processes and keeps its filesystem for the builder to read; `remove`
 * tears it down (idempotent). Never in the manager's live set, its agent's close is no death.
 */
export function openBuildSandbox(s: {
  host: HostDeps;
  store: Store;
  template: Template;
  record: SandboxRecord;
  agent?: AgentClient;
}): BuildSandbox {
  const { host, store, template } = s;
  const agent = s.agent!; // set once build() returns
  const { id, slot } = s.record;
  const dir = sandboxDir(host, id);
  let removed: Promise<void> | undefined;
  return {
    uidBase: uidBase(slot),
    rootfs: join(dir, 'rootfs'),
    upper: join(dir, 'upper'),
    run: async (argv, o, onData) => {
      const { passwd, group } = await readUserDb(agent);
      const who = resolveUser(o.user, passwd, group);
      const opts = spawnOptions(template, who, {}, { argv, env: o.env, ...(o.cwd && { cwd: o.cwd }) });
      return new Promise<number>((resolve, reject) => {
        agent
          .spawn(opts, { onData: (_s, d) => onData(d), onExit: (r) => resolve(r.exitCode), onDetach: reject })
          .catch(reject);
      });
    },
    writeFile: async (path, data) => {
      await agent.writeFile(path, data, { uid: 0, gid: 0 });
    },
    stop: () => host.runtime.destroy(id),
    remove: () =>
      (removed ??= (async () => {
        agent.close();
        await teardown(host, id, slot);
        store.deleteSandbox(id);
      })()),
  };
}
