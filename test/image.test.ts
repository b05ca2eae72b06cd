import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../src/config/config.ts';
import { run } from '../src/core/exec.ts';
import type { Cove } from '../src/main.ts';
import { canRunSandboxes, pointSdkAt, startTestCove, stopTestCove } from './helpers.ts';

// The image deploy/kubernetes runs (deploy/image/build.sh: Debian packages and npm only),
// exercised the one way this machine can run an OCI image: imported as a Cove template
// (`cove template import`), in a sandbox. That runs its files (Node from npm, the app, the
// Debian tools a node needs), not its entrypoint under a container runtime, nor a Kubernetes
// cluster (docs/scale-out.md says what was and was not exercised).
// Opt-in (COVE_TEST_IMAGE=1): a cold build is about five minutes of mmdebstrap, npm ci and
// gzip on a loaded 2-core machine, and the import a minute more, beyond CI's budget for it.
const root = join(import.meta.dirname, '..');

describe.skipIf(!canRunSandboxes || process.env.COVE_TEST_IMAGE !== '1')(
  'the container image (deploy/image/build.sh)',
  () => {
    let cove: Cove & { config: Config; apiKey: string };
    let archive: string;
    const name = `cove-image-${randomBytes(3).toString('hex')}`;

    beforeAll(async () => {
      // Cached by recipe in /var/lib/cove/images: cold, about a minute of mmdebstrap and npm ci.
      const built = await run('bash', [join(root, 'deploy', 'image', 'build.sh')], { timeoutMs: 900_000 });
      archive = built.stdout.trim().split('\n').at(-1)!;
      cove = await startTestCove();
      pointSdkAt(cove);
    }, 900_000);

    afterAll(async () => {
      if (!cove) return;
      await fetch(`${cove.url}/templates/${name}`, {
        method: 'DELETE',
        headers: { 'X-API-Key': cove.apiKey },
      });
      expect(await stopTestCove(cove)).toEqual([]);
    });

    it('imports as a template whose sandbox runs cove on Node 24 with the tools a node needs', async () => {
      expect(statSync(archive).size).toBeGreaterThan(50 << 20);
      const imported = await run(join(root, 'bin', 'cove'), ['template', 'import', archive, '--name', name], {
        timeoutMs: 600_000,
        env: { ...process.env, COVE_URL: cove.url, COVE_API_KEY: cove.apiKey },
      });
      expect(imported.stderr).toMatch(/template .* is ready/);
      const { Sandbox } = await import('e2b');
      const sbx = await Sandbox.create(name, { timeoutMs: 120_000 });
      try {
        const version = await sbx.commands.run('/app/node_modules/.bin/node --version');
        expect(version.stdout).toMatch(/^v24\./);
        const help = await sbx.commands.run('/app/bin/cove --help');
        for (const command of ['serve', 'api', 'node'])
          expect(help.stdout).toMatch(new RegExp(`^\\s+${command}\\b`, 'm'));
        const tools = await sbx.commands.run(
          'PATH=$PATH:/usr/sbin:/sbin; for t in crun runc runsc nft ip mmdebstrap skopeo umoci git; do command -v $t; done',
        );
        expect(tools.stdout.trim().split('\n'), tools.stdout).toHaveLength(9);
      } finally {
        await sbx.kill();
      }
    }, 900_000);
  },
);
