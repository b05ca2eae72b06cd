/**
 * conformance-cleanup.test.ts's stand-in for a conformance run: it makes what a run makes (a
 * bridge and an nftables table of its instance, a template built through its server), registers
 * their removal as conformance/run.ts does, prints `ready`, then ends as told:
 * `node conformance-cleanup-child.ts <instance> <templates home> <server home> <recipes dir> ok|fail|wait`.
 */
import { execFileSync } from 'node:child_process';
import * as c from '../conformance/cleanup.ts';

const [instance, templatesHome, home, recipes, end] = process.argv.slice(2) as [
  string,
  string,
  string,
  string,
  string,
];
const log = (line: string) => console.log(line);
c.trapSignals(log);
try {
  execFileSync('ip', ['link', 'add', `${instance}0`, 'type', 'bridge']);
  c.onCleanup('the network', () => c.removeNetwork(instance));
  execFileSync('nft', ['add', 'table', 'inet', instance]);
  c.onCleanup('the templates', () =>
    log(`kept: ${c.removeTemplates(templatesHome, c.templatesBuiltIn(home), recipes).join(' ')}`),
  );
  c.onCleanup('a step that fails', () => {
    throw new Error('this step fails; the others still run');
  });
  log('ready');
  if (end === 'fail') throw new Error('the run failed');
  if (end === 'wait') await new Promise(() => setInterval(() => {}, 1000));
} finally {
  await c.cleanup(log);
}
