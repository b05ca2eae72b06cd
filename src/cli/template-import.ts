import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { Command, Option } from 'commander';
import { CoveError } from '../core/errors.ts';
import { ARCHIVE_PREFIX } from '../templates/build/spec.ts';
import type { createClient } from './client.ts';

type Client = ReturnType<typeof createClient>;

interface Status {
  status: 'waiting' | 'building' | 'ready' | 'error';
  logEntries: Array<{ timestamp: string; level: string; message: string; step?: string }>;
  reason?: { message: string; step?: string };
}

async function sha256(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * `cove template import image.tar --name my-img`: an OCI archive (`skopeo copy … oci-archive:`,
 * `podman save --format oci-archive`) or a `docker save` archive becomes a template. It takes
 * the build API's own path: the archive is uploaded like a COPY's files (signed URL, size
 * limit, kept by its hash) and built with a fromImage that names it, so the server unpacks it
 * with the same code as a registry pull, and the build's log streams here as it goes.
 */
export function importCommand(client: () => Client): Command {
  return new Command('import')
    .description('make a template from an OCI or docker-archive tar (podman/docker save, skopeo copy)')
    .argument('<archive>', 'the image archive')
    .requiredOption('--name <name[:tag]>', 'template name, with an optional tag')
    .addOption(new Option('--cpu <count>', 'CPUs of its sandboxes').argParser(Number))
    .addOption(new Option('--memory <MiB>', 'memory of its sandboxes').argParser(Number))
    .action(async (archive: string, o: { name: string; cpu?: number; memory?: number }) => {
      const path = resolve(archive);
      const size = (await stat(path).catch(() => undefined))?.size;
      if (size === undefined) throw new CoveError('invalid_argument', `${archive}: no such file`);
      const api = client();
      const started = Date.now();
      const say = (line: string) =>
        process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${line}\n`);
      const hash = await sha256(path);
      const build = await api.json<{ templateID: string; buildID: string }>('POST', '/v3/templates', {
        name: o.name,
        ...(o.cpu !== undefined && { cpuCount: o.cpu }),
        ...(o.memory !== undefined && { memoryMB: o.memory }),
      });
      const id = encodeURIComponent(build.templateID);
      const files = await api.json<{ present: boolean; url?: string }>(
        'GET',
        `/templates/${id}/files/${hash}`,
      );
      if (!files.present && files.url) {
        say(`uploading ${(size / 2 ** 20).toFixed(1)} MiB`);
        const res = await fetch(files.url, {
          method: 'PUT',
          headers: { 'content-length': String(size) },
          body: Readable.toWeb(createReadStream(path)),
          duplex: 'half',
        });
        if (!res.ok) throw new CoveError('invalid_argument', `upload refused: ${await res.text()}`);
      }
      await api.request('POST', `/v2/templates/${id}/builds/${build.buildID}`, {
        fromImage: `${ARCHIVE_PREFIX}${hash}`,
        steps: [],
      });
      let offset = 0;
      for (;;) {
        const s = await api.json<Status>(
          'GET',
          `/templates/${id}/builds/${build.buildID}/status?logsOffset=${offset}`,
        );
        offset += s.logEntries.length;
        for (const e of s.logEntries) say(`${e.level === 'info' ? '' : `${e.level}: `}${e.message}`);
        if (s.status === 'ready') {
          say(`template ${o.name} is ready`);
          return;
        }
        if (s.status === 'error')
          throw new CoveError('invalid_argument', `import failed: ${s.reason?.message ?? 'no reason given'}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    });
}
