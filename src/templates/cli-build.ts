// Builds templates when their recipe changed, quietly when nothing did:
//   node src/templates/cli-build.ts [NAME...]      (default: base)
// Run by scripts/setup.sh, before the project's config may even load; it reads the two variables
// it needs with the same precedence as src/config: COVE_TEMPLATES_HOME, COVE_HOME, /var/lib/cove.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { exitStatus, isCoveError } from '../core/errors.ts';
import { createTemplateStore } from './store.ts';

const home = process.env.COVE_TEMPLATES_HOME || process.env.COVE_HOME || '/var/lib/cove';
const store = createTemplateStore({ home, recipesDir: join(import.meta.dirname, '..', '..', 'templates') });
const names = process.argv.slice(2);

for (const name of names.length > 0 ? names : ['base']) {
  let built = false;
  try {
    const t = await store.ensure(name, {
      log: (line) => {
        built = true;
        process.stderr.write(`  ${line}\n`);
      },
    });
    if (built) {
      const size = execFileSync('du', ['-sh', '--one-file-system', t.rootfs], { encoding: 'utf8' }).split(
        '\t',
      )[0];
      process.stderr.write(`template ${name}: ${t.rootfs} (${size})\n`);
    }
  } catch (err) {
    if (isCoveError(err)) {
      process.stderr.write(`template ${name}: ${err.message}\n`);
      process.exit(exitStatus[err.code]);
    }
    throw err;
  }
}
