import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Logger } from '../core/log.ts';
import type { Store } from '../store/store.ts';
import type { Template } from '../templates/index.ts';
import { sandboxDir, teardown, UID_COUNT, uidBase, type HostDeps } from './host.ts';
import { copyLayer } from './layers.ts';
import type { Live } from './manager.ts';
import { detachAgent } from './pause.ts';
import type { BuildInput } from './pause-wiring.ts';

interface Meta {
  agentToken: string;
  uidBase: number;
}

/**
 * Templates with a start command, on a runtime that can checkpoint (runsc), start from memory,
 * as E2B's do: its templates are snapshots taken once the ready command succeeded, so a
 * sandbox's server is up the moment it exists. The first create of such a build boots cold as
 * usual and, beside it, a capture runs: a hidden sandbox of the build is started and readied,
 * checkpointed, and its writable layer copied, into `<build>/memory.<runtime>/` (published by a
 * rename, so a half-made one is never used). Later creates restore it like a fork: their own
 * layer copy, id, address and envd token; the agent's channel token is the captured one (it is
 * in the image; it only authenticates Cove over a socket each sandbox has alone). A build whose
 * server gVisor cannot save (epoll on TCP: Node, uvicorn) is marked `memory.<runtime>.no` with
 * the reason, and boots cold for good. A restored server has the environment of the capture:
 * a create's envs reach the commands it runs, not the server (as on E2B).
 */
export function createTemplateMemory(deps: {
  host: HostDeps;
  store: Store;
  log: Logger;
  /** A hidden (pooled) sandbox of the build, started and readied; never in `live`. */
  hidden: (template: Template) => Promise<Live>;
}) {
  const { host, store, log } = deps;
  const capturing = new Set<string>();
  const dirOf = (t: Template, runtime: string) => join(dirname(t.rootfs), `memory.${runtime}`);

  async function capture(template: Template, runtime: string): Promise<void> {
    const dir = dirOf(template, runtime);
    const tmp = `${dir}.tmp-${randomBytes(6).toString('hex')}`;
    const started = Date.now();
    const entry = await deps.hidden(template);
    const { id, slot } = entry.record;
    try {
      entry.processes.close();
      detachAgent(entry);
      await mkdir(join(tmp, 'image'), { recursive: true, mode: 0o700 });
      try {
        await host.runtime.checkpoint(id, join(tmp, 'image'));
      } catch (err) {
        await writeFile(`${dir}.no`, `${String(err)}\n`);
        log.info(
          { template: template.name, err: String(err) },
          'template cannot start from memory: it boots cold',
        );
        return;
      }
      const base = uidBase(slot);
      await copyLayer(join(sandboxDir(host, id), 'upper'), join(tmp, 'upper'), {
        fromBase: base,
        toBase: base,
        count: UID_COUNT,
      });
      const meta: Meta = { agentToken: entry.record.agentToken, uidBase: base };
      await writeFile(join(tmp, 'meta.json'), JSON.stringify(meta), { mode: 0o600 });
      await rename(tmp, dir);
      log.info(
        { template: template.name, ms: Date.now() - started },
        'template captured after its ready command',
      );
    } finally {
      await teardown(host, id, slot).catch((err: unknown) =>
        log.warn({ err, sandbox: id }, 'capture teardown failed'),
      );
      store.deleteSandbox(id);
      await rm(tmp, { recursive: true, force: true });
    }
  }

  return {
    /**
     * A create's input, restoring the build's captured memory when there is one; a capture
     * is started when there could be one and none is under way.
     */
    withMemory: (template: Template, input: BuildInput): BuildInput => {
      const runtime = template.runtime ?? host.runtime.defaultName;
      const caps = host.runtime.get(runtime).capabilities;
      // A VM (guest-kernel) starts as a clone of its template's saved VM already; its captures
      // would also hold a disk backed by that saved VM, which is collected on its own schedule.
      if (!template.start || input.seed || !caps.has('checkpoint-memory') || caps.has('guest-kernel'))
        return input;
      const dir = dirOf(template, runtime);
      if (existsSync(join(dir, 'meta.json'))) {
        const meta = JSON.parse(readFileSync(join(dir, 'meta.json'), 'utf8')) as Meta;
        return {
          ...input,
          seed: { upper: join(dir, 'upper'), uidBase: meta.uidBase },
          restore: { image: join(dir, 'image'), agentToken: meta.agentToken, runtime },
        };
      }
      if (!existsSync(`${dir}.no`) && !capturing.has(dir)) {
        capturing.add(dir);
        capture(template, runtime)
          .catch((err: unknown) => log.warn({ err, template: template.name }, 'template capture failed'))
          .finally(() => capturing.delete(dir));
      }
      return input;
    },
  };
}
